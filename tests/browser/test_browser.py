"""What a learner sees, in a real browser: JupyterLab and the Voilà playground in Debian's Chromium.

Papermill runs every lesson headless, but only a rendering front end shows what a learner
trips over: a dollar amount typeset as math ("$2.03 instead of $3.28" read as LaTeX), a
constraint mark drawn as an empty box, a widget that never became a control, a slider that
does not move its chart. This test starts JupyterLab on 127.0.0.1 with a token on a scratch
copy of the notebooks (so nothing it runs or saves touches the repository), drives Chromium
with Playwright, runs every cell of lesson 00, lesson 08 and a challenge template, and checks
those things; then it does the same for `costlab playground` (Voilà).

Screenshots land in out/screenshots/ (gitignored; CI keeps the folder). The browser is
Debian's `chromium` (`apt-get install -y chromium`; `.ci/run` installs it), launched by path:
never `playwright install`. Without chromium or playwright the test is skipped and says why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "out" / "screenshots"
TOKEN = "costlab-browser-test"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
START_TIMEOUT_S = 90
RUN_TIMEOUT_S = 240

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium; "
                                                ".ci/run installs it)"),
    pytest.mark.timeout(900),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")

#: the notebooks opened, each with what it must show: a dashboard to drive, constraint marks, dollars as text
NOTEBOOKS = {
    "lesson-00": ("notebooks/00_start_here.ipynb", {"dashboard": True, "marks": False, "dollars": True}),
    "lesson-08": ("notebooks/08_rate_limits_and_budgets.ipynb", {"dashboard": True, "marks": False, "dollars": True}),
    "challenge-b1": ("challenges/b1-first-cache/template.ipynb", {"dashboard": False, "marks": True, "dollars": False}),
}

#: the notebook's scrolling panel (the file browser is a windowed panel too)
NOTEBOOK_SCROLLER = ".jp-NotebookPanel .jp-WindowedPanel-outer"

#: a dollar figure as costlab prints it: $2.03, $1,234, $0.0123
DOLLARS = re.compile(r"\$\d[\d,]*(\.\d+)?")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"no answer from {url} within {timeout_s:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    """Stop a server and what it started: its whole process group when it leads one
    (`costlab playground` runs Voilà as a child, which would outlive its parent)."""
    leads_group = proc.poll() is None and os.getpgid(proc.pid) == proc.pid

    def send(sig) -> None:
        try:
            os.killpg(proc.pid, sig) if leads_group else proc.send_signal(sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait(timeout=5)
    if leads_group:
        send(signal.SIGKILL)       # whatever of the group is still shutting down


def _env(tmp: Path) -> dict:
    """Jupyter's config, data and runtime folders in scratch; this worktree's costlab for the kernels."""
    env = dict(os.environ)
    env.update(JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
               MPLBACKEND="Agg")
    return env


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A scratch copy of what the learner opens: notebooks, challenges, scenarios."""
    tmp = tmp_path_factory.mktemp("learner")
    for folder in ("notebooks", "challenges", "scenarios"):
        shutil.copytree(ROOT / folder, tmp / "repo" / folder, ignore=shutil.ignore_patterns("*.py", "__pycache__")
                        if folder != "scenarios" else None)
    # JupyterLab draws only the cells in view unless windowing is off: every output must exist to be checked
    settings = tmp / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    (tmp / "settings" / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (tmp / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    return tmp


@pytest.fixture(scope="module")
def jupyterlab(workdir):
    """JupyterLab on 127.0.0.1 with a token, serving the scratch copy; stopped after the module."""
    port = _free_port()
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={workdir / 'repo'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(workdir / "jupyterlab.log", "wb")   # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(cmd, env=_env(workdir), stdout=log, stderr=subprocess.STDOUT, cwd=workdir / "repo")
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{base}/api/status?token={TOKEN}", proc, START_TIMEOUT_S)
        yield base
    finally:
        _stop(proc)
        log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


# --------------------------------------------------------------------------- helpers


def _prompts(page) -> list[str]:
    return [t.strip() for t in page.locator(".jp-Notebook .jp-InputPrompt").all_inner_texts() if t.strip()]


def _kernel_idle(page) -> bool:
    """The status bar's kernel state (the toolbar's indicator says idle before the kernel is even connected)."""
    bar = page.locator("#jp-main-statusbar")
    return bar.count() > 0 and re.search(r"\|\s*Idle", bar.inner_text()) is not None


def _run_all(page) -> None:
    """Wait for the kernel to be idle, then Run > Run All Cells, and wait until every code cell has run."""
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    deadline = time.monotonic() + 90
    while not _kernel_idle(page):
        if time.monotonic() > deadline:
            raise TimeoutError("the kernel did not become idle within 90 s")
        page.wait_for_timeout(300)
    page.wait_for_timeout(500)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        page.wait_for_timeout(500)
        prompts = _prompts(page)
        if prompts and all(re.fullmatch(r"\[\d+\]:", t) for t in prompts) and _kernel_idle(page):
            return
    raise TimeoutError(f"cells not all run after {RUN_TIMEOUT_S} s: prompts {_prompts(page)}")


def _screenshot(page, name: str, scroller: str) -> Path:
    """The whole page, tall enough to hold every cell (the notebook scrolls inside a fixed-height panel)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate(f"() => {{ const e = document.querySelector({scroller!r}); return e ? e.scrollHeight : 0; }}")
    page.set_viewport_size({"width": 1280, "height": int(min(max(height + 200, 900), 16000))})
    page.evaluate(f"() => {{ const e = document.querySelector({scroller!r}); if (e) e.scrollTop = 0; }}")
    page.wait_for_timeout(800)
    out = SHOTS / f"{name}.png"
    page.screenshot(path=str(out), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    return out


def _chart_png(dashboard) -> str:
    return dashboard.locator(".widget-image").first.get_attribute("src") or ""


def _move_a_slider(page, scope) -> None:
    """Move the first slider by keyboard (as a learner does), then wait for the dashboard to redraw its chart."""
    before = _chart_png(scope)
    handle = scope.locator(".widget-slider .noUi-handle, .widget-slider .slider-handle").first
    handle.focus()
    for _ in range(8):
        page.keyboard.press("PageUp")
    page.keyboard.press("End")   # the far end of the range: a change no rounding can hide
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _chart_png(scope) != before:
            return
        page.wait_for_timeout(300)
    raise AssertionError("moving the slider did not change the dashboard's chart within 60 s")


def _math_with_dollars(page) -> list[str]:
    """Texts of typeset math (MathJax 3 / MathJax 2 / KaTeX) that hold a dollar figure or plain words."""
    texts = page.locator("mjx-container, .MathJax, .katex").all_inner_texts()
    return [t for t in texts if re.search(r"\d", t) and re.search(r"[A-Za-z]{4,}|\d\.\d", t)]


def _visible_dollars(page, scope: str) -> list[str]:
    text = " ".join(page.locator(scope).all_inner_texts())
    return [m.group(0) for m in DOLLARS.finditer(text)]


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_a_notebook_as_a_learner_sees_it(jupyterlab, browser, workdir, name):
    path, expect = NOTEBOOKS[name]
    started = time.monotonic()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(f"{jupyterlab}/lab/tree/{path}?reset&token={TOKEN}", timeout=60_000)
        _run_all(page)
        page.wait_for_timeout(1500)   # widget views attach after their outputs
        outputs = ".jp-Notebook .jp-OutputArea"

        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                              has_text=re.compile(r"Traceback|Error\b")).all_inner_texts()
        assert not errors, f"{path}: error output: {errors[0][:500]}"

        math = _math_with_dollars(page)
        assert not math, f"{path}: text typeset as math (a '$' pair read as LaTeX?): {math[:3]}"
        if expect["dollars"]:
            assert _visible_dollars(page, outputs), f"{path}: no dollar amount visible as text in any output"

        if expect["dashboard"]:
            dash = page.locator(".widget-vbox", has=page.locator(".widget-image")).filter(
                has=page.locator(".widget-slider")).first
            assert page.locator(f"{outputs} .widget-slider").count() >= 1, f"{path}: no slider rendered"
            assert page.locator(f"{outputs} .widget-image").count() >= 1, f"{path}: no dashboard chart rendered"
            _screenshot(page, f"{name}-before-slider", NOTEBOOK_SCROLLER)
            _move_a_slider(page, dash)
        if expect["marks"]:
            cells = [t.strip() for t in page.locator(f"{outputs} td").all_inner_texts()]
            assert "met" in cells or "MISSED" in cells, f"{path}: no constraint mark as text in {cells[:40]}"
            assert not any(c in "".join(cells) for c in "✅❌✓✗"), f"{path}: a mark that needs an emoji font"
        shot = _screenshot(page, name, NOTEBOOK_SCROLLER)
        assert shot.stat().st_size > 10_000
    finally:
        page.close()
    print(f"{name}: {time.monotonic() - started:.1f} s in the browser")


@pytest.fixture(scope="module")
def playground(workdir):
    """`costlab playground` (Voilà) on 127.0.0.1; stopped after the module."""
    pytest.importorskip("voila", reason="voila (the lab extra) is not installed")
    port = _free_port()
    cmd = [sys.executable, "-m", "lab.cli", "playground", "--port", str(port), "--requests", "1000"]
    log = open(workdir / "playground.log", "wb")   # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(cmd, env=_env(workdir), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{base}/", proc, START_TIMEOUT_S)
        yield base
    finally:
        _stop(proc)
        log.close()


def test_the_playground_web_app(playground, browser):
    started = time.monotonic()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(playground, timeout=120_000)
        page.wait_for_selector(".widget-slider", timeout=120_000)
        page.wait_for_selector(".widget-image", timeout=60_000)
        assert page.locator(".widget-dropdown").count() >= 1, "the playground's dropdowns did not render"
        assert not page.get_by_text("Traceback").count(), "the playground shows a traceback"
        _move_a_slider(page, page.locator("body"))
        assert not _math_with_dollars(page)
        _screenshot(page, "playground", "body")
    finally:
        page.close()
    print(f"playground: {time.monotonic() - started:.1f} s in the browser")
