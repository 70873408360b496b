"""Issue 15's attack classes, each a hostile notebook graded for real (papermill in the sandbox).

One module fixture runs `costlab grade-all` (2 workers) on a class folder whose first two
submissions run at the same time: a spy polling /tmp for a sibling's scratch while a victim
holds its policy there (class 1). The same batch holds notebooks that dial host Unix sockets
(2), use SysV IPC (3), print terminal escapes (7) and fork past the pids limit (5). The memory
bomb across children (5), the mount whose path holds a space, tab and backslash (4) and the
daemon left behind under `--isolation process` (10) each get their own grader. Sandbox tests
need root and unshare (CI and this machine run as root); elsewhere they are skipped.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import pytest

from lab.grading import Grader, Leaderboard, Limits, PrivateDir, isolation_mode
from lab.grading._sandbox_setup import unescape
from lab.grading.cgroups import RunCgroup

CHALLENGE = "b1-first-cache"
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                reason="sandbox tests need root and unshare")
ESCAPES = "\x1b[2J\x1b[H\x1b]0;pwned\x07score 97.00\x9b31m"
IPC_CREAT = 0o1000
IPC_RMID = 0
HOST_KEY, NOTEBOOK_KEY = 0x0C057AB1, 0x0C057AB2

VICTIM = '''
import json, time
json.dump({"pipeline": [{"stage": "cache", "shared": True, "capacity": 4321}]}, open(policy_path, "w"))
t0 = time.time()
time.sleep(6)
print("WINDOW" + json.dumps([t0, time.time()]))
'''
SPY = '''
import glob, json, os, time
mine = os.path.dirname(policy_path)
found, t0 = set(), time.time()
while time.time() - t0 < 6:
    for pattern in ("/tmp/costlab-grade-*/scratch/*", "/tmp/*/*/policy.json", "/tmp/*/*/*.ipynb", "/var/tmp/*"):
        found |= {p for p in glob.glob(pattern) if not p.startswith(mine)}
    time.sleep(0.2)
print("SPY" + json.dumps({"found": sorted(found), "tmp": os.listdir("/tmp"), "window": [t0, time.time()]}))
'''
SOCKETS = '''
import json, socket
reached = {}
for path in PATHS:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        reached[path] = "CONNECTED"
    except OSError as e:
        reached[path] = type(e).__name__
print("SOCK" + json.dumps(reached))
'''
IPC = f'''
import ctypes, json
libc = ctypes.CDLL(None, use_errno=True)
class Msg(ctypes.Structure):
    _fields_ = [("mtype", ctypes.c_long), ("mtext", ctypes.c_char * 16)]
seen = {{"host_shm": libc.shmget({HOST_KEY}, 0, 0), "host_msg": libc.msgget({HOST_KEY}, 0)}}
seen["own_shm"] = libc.shmget({NOTEBOOK_KEY}, 1 << 20, {IPC_CREAT} | 0o600)
q = libc.msgget({NOTEBOOK_KEY}, {IPC_CREAT} | 0o600)
seen["own_msg"] = q
seen["sent"] = libc.msgsnd(q, ctypes.byref(Msg(1, b"left for later")), 16, 0)
print("IPC" + json.dumps(seen))
'''
ANSI = f'raise RuntimeError({ESCAPES!r})'
PIDS = '''
import json, subprocess
procs, error = [], None
try:
    for _ in range(300):
        procs.append(subprocess.Popen(["sleep", "30"]))
except OSError as e:
    error = f"{type(e).__name__}: {e}"
for p in procs:
    p.kill()
print("PIDS" + json.dumps({"started": len(procs), "error": error}))
'''
MEMORY = '''
import json, os, time
children = []
for _ in range(5):
    pid = os.fork()
    if pid == 0:
        try:
            hog = b"\\x01" * (700 * 2**20)      # written, so resident: 5 x 700 MB against a 2,048 MB group
            time.sleep(4)
        finally:
            os._exit(0)
    children.append(pid)
print("MEM" + json.dumps([os.waitpid(pid, 0)[1] for pid in children]))
'''
DAEMON = '''
import json, subprocess, time
first = subprocess.Popen(["env", "-i", "setsid", "sleep", "300"])
second = subprocess.run(["sh", "-c", "setsid sleep 301 > /dev/null 2>&1 & echo $!"], capture_output=True, text=True)
time.sleep(0.5)
print("DAEMON" + json.dumps([first.pid, int(second.stdout)]))
'''
MOUNT_WRITE = '''
import json, os
try:
    open(os.path.join(TARGET, "planted"), "w").write("x")
    print("MOUNT" + json.dumps("WRITTEN"))
except OSError as e:
    print("MOUNT" + json.dumps(type(e).__name__))
'''


def notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('challenge_path = "challenge.toml"\npolicy_path = "policy.json"\n'
                                       'preview_requests = None\ngrading = False')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(c.strip()) for c in cells)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def printed(path: Path, tag: str):
    """The JSON a notebook printed after `tag`, read from its executed copy."""
    nb = nbformat.read(path, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    return json.loads(text.split(tag, 1)[1].splitlines()[0])


def unix_listener(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.listen(4)
    s.settimeout(0.01)
    return s


def accepted(s: socket.socket) -> int:
    n = 0
    with contextlib.suppress(OSError):
        while True:
            s.accept()[0].close()
            n += 1
    return n


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    if isolation_mode() != "namespaces":
        pytest.skip("this machine gives no namespaces mode")
    base = tmp_path_factory.mktemp("hostile")
    private = base / "private"
    PrivateDir(private).init([CHALLENGE], seeds_per_challenge=2)
    tag = uuid.uuid4().hex[:8]
    socket_paths = [Path(f"/tmp/costlab-test-{tag}/s"), Path(f"/run/costlab-test-{tag}/s"),
                    Path(f"/root/.costlab-test-{tag}/s")]
    listeners = [unix_listener(p) for p in socket_paths]
    libc = ctypes.CDLL(None, use_errno=True)
    host_shm = libc.shmget(HOST_KEY, 4096, IPC_CREAT | 0o600)
    host_msg = libc.msgget(HOST_KEY, IPC_CREAT | 0o600)
    subs, out = base / "class", base / "graded"
    notebook(subs / "aa-spy" / "spy.ipynb", SPY)             # sorted first: the two start together
    notebook(subs / "ab-victim" / "victim.ipynb", VICTIM)
    notebook(subs / "ac-sockets" / "sockets.ipynb", f"PATHS = {[str(p) for p in socket_paths]!r}", SOCKETS)
    notebook(subs / "ad-ipc" / "ipc.ipynb", IPC)
    notebook(subs / "ae-ansi" / "ansi.ipynb", ANSI)
    notebook(subs / "af-pids" / "pids.ipynb", PIDS)
    try:
        done = subprocess.run([sys.executable, "-m", "lab.cli", "grade-all", str(subs), "--challenge", CHALLENGE,
                               "--private-dir", str(private), "--out", str(out), "--workers", "2", "--timeout-s",
                               "60", "--daily-limit", "0", "--max-processes", "96"], capture_output=True,
                              text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
        code, stdout = done.returncode, io.StringIO(done.stdout + done.stderr)
        after = {"notebook_shm": libc.shmget(NOTEBOOK_KEY, 0, 0), "notebook_msg": libc.msgget(NOTEBOOK_KEY, 0)}
        yield {"base": base, "out": out, "private": private, "code": code, "stdout": stdout.getvalue(),
               "accepted": [accepted(s) for s in listeners], "socket_paths": socket_paths, "ipc_after": after,
               "results": {p.name.split(".")[0]: json.loads(p.read_text()) for p in out.glob("*.grade.json")}}
    finally:
        for s, p in zip(listeners, socket_paths):
            s.close()
            shutil.rmtree(p.parent, ignore_errors=True)
        libc.shmctl(host_shm, IPC_RMID, None)
        libc.msgctl(host_msg, IPC_RMID, None)


def outside_checkout(paths: list[str]) -> list[str]:
    """Paths that are neither this checkout, a folder holding it, nor inside it.

    A checkout under /tmp (a reviewer's `mktemp -d` clone) is shown to the run on purpose: its
    Python and costlab run from there. Under /work (CI) this leaves every path in.
    """
    return [p for p in paths if not (Path(p) in (ROOT, *ROOT.parents) or ROOT in Path(p).parents)]


def test_class1_a_concurrent_sibling_scratch_is_invisible(batch):
    spy = printed(batch["out"] / "aa-spy.spy.graded.ipynb", "SPY")
    victim = printed(batch["out"] / "ab-victim.victim.graded.ipynb", "WINDOW")
    assert max(spy["window"][0], victim[0]) < min(spy["window"][1], victim[1])   # they did run at once
    assert outside_checkout(spy["found"]) == []
    tmp = [Path(p).name for p in outside_checkout([f"/tmp/{name}" for name in spy["tmp"]])]
    assert len(tmp) == 1 and tmp[0].startswith("costlab-grade-")     # its own scratch only
    assert batch["results"]["ab-victim"]["status"] == "graded"


def test_class2_host_unix_sockets_are_unreachable(batch):
    reached = printed(batch["out"] / "ac-sockets.sockets.graded.ipynb", "SOCK")
    assert set(reached) == {str(p) for p in batch["socket_paths"]}
    assert "CONNECTED" not in reached.values()
    assert batch["accepted"] == [0, 0, 0]


def test_class2_the_db_urls_socket_folder_is_hidden(tmp_path):
    sockets = tmp_path / "pg sockets"
    sockets.mkdir()

    class UrlOnly(Leaderboard):          # a PostgreSQL URL without a server: only its parts are read
        def __init__(self, url):
            self.url, self.dialect = url, "postgresql"

    private = tmp_path / "private"
    PrivateDir(private).init([CHALLENGE], seeds_per_challenge=1)
    for url in (f"postgresql:///costlab?host={sockets}", f"postgresql+psycopg://u@/db?host={sockets}/.s.PGSQL.5432"):
        grader = Grader(CHALLENGE, private_dir=private, db=UrlOnly(url))
        assert str(sockets.resolve()) in grader.secret_folders()


def test_class3_sysv_ipc_is_not_shared_with_the_host(batch):
    seen = printed(batch["out"] / "ad-ipc.ipc.graded.ipynb", "IPC")
    assert seen["host_shm"] == -1 and seen["host_msg"] == -1        # the host's segment and queue: not there
    assert seen["own_shm"] >= 0 and seen["own_msg"] >= 0 and seen["sent"] == 0
    assert batch["ipc_after"] == {"notebook_shm": -1, "notebook_msg": -1}   # gone with the run's namespace
    assert "IPC namespace" in batch["results"]["ad-ipc"]["isolation"]["ipc"]


def test_class5_the_pids_limit_holds_for_the_run(batch):
    seen = printed(batch["out"] / "af-pids.pids.graded.ipynb", "PIDS")
    assert seen["started"] < 96 and "Resource temporarily unavailable" in seen["error"]
    assert "at most 96 processes" in batch["results"]["af-pids"]["isolation"]["cgroup"]


def test_class7_terminal_escapes_never_reach_the_terminal_or_the_files(batch):
    r = batch["results"]["ae-ansi"]
    assert r["score"] == 0 and "\\x1b[2J" in r["reason"] and "\x1b" not in r["reason"]
    shown = batch["stdout"]
    assert "ae-ansi" in shown and not any(c in shown for c in "\x1b\x07\x9b")
    summary = (batch["out"] / "summary.csv").read_text()
    assert not any(c in summary for c in "\x1b\x07\x9b")
    rows = list(csv.DictReader(io.StringIO(summary)))
    assert any("\\x1b]0;pwned" in row["reason"] for row in rows)
    stored = Leaderboard(batch["private"] / "leaderboard.db").submissions(CHALLENGE)
    assert not any(c in " ".join(stored["reason"]) for c in "\x1b\x07\x9b")


def test_class5_memory_is_limited_for_all_processes_of_a_run(tmp_path):
    if isolation_mode() != "namespaces":
        pytest.skip("this machine gives no namespaces mode")
    group, why = RunCgroup.make(64, 16, 0.1)
    if group is None:
        pytest.skip(why)
    group.remove()
    private = tmp_path / "private"
    PrivateDir(private).init([CHALLENGE], seeds_per_challenge=1)
    nb = notebook(tmp_path / "sub" / "memory.ipynb", MEMORY)
    grader = Grader(CHALLENGE, private_dir=private, limits=Limits(timeout_s=60, memory_mb=2048), daily_limit=0)
    r = grader.grade(nb, "mallory", output=tmp_path / "memory.graded.ipynb")
    assert "memory 2,048 MB" in r.isolation["cgroup"]
    try:
        statuses = printed(tmp_path / "memory.graded.ipynb", "MEM")
        assert any(os.WIFSIGNALED(s) and os.WTERMSIG(s) == 9 for s in statuses)   # the OOM killer in the group
    except (IndexError, FileNotFoundError):
        assert "kernel died" in r.reason          # or the group's OOM killer took the kernel itself
    leftovers = [d for d in Path("/sys/fs/cgroup").glob("*/**/costlab-run-*") if d.is_dir()]
    assert leftovers == [] or all(d.name not in r.isolation["cgroup"] for d in leftovers)


def test_class10_process_mode_kills_the_whole_tree(tmp_path):
    private = tmp_path / "private"
    PrivateDir(private).init([CHALLENGE], seeds_per_challenge=1)
    nb = notebook(tmp_path / "sub" / "daemon.ipynb", DAEMON)
    grader = Grader(CHALLENGE, private_dir=private, limits=Limits(timeout_s=60), isolation="process", daily_limit=0)
    r = grader.grade(nb, "mallory", output=tmp_path / "daemon.graded.ipynb")
    pids = printed(tmp_path / "daemon.graded.ipynb", "DAEMON")
    assert r.isolation["mode"] == "process"
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            continue
        assert state in ("Z", "X"), (pid, state)          # killed (a zombie waits only for its reaper)


MOUNT_SCRIPT = r'''
import json, subprocess, sys
from pathlib import Path
from lab.grading import Grader, Limits
target, nb, private, out = map(Path, sys.argv[1:5])
target.mkdir(parents=True)
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "hostile-space", str(target)], check=True)
r = Grader("b1-first-cache", private_dir=private, limits=Limits(timeout_s=60), daily_limit=0).grade(
    nb, "mallory", output=out)
print(json.dumps({"reason": r.reason, "left": sorted(p.name for p in target.iterdir())}))
'''


def test_class4_a_mount_whose_path_holds_a_space_tab_and_backslash_is_read_only(tmp_path):
    if isolation_mode() != "namespaces":
        pytest.skip("this machine gives no namespaces mode")
    holder = ROOT / f".sandbox-test-{uuid.uuid4().hex[:8]}"          # outside /tmp: visible in the sandbox
    target = holder / "a b\tc\\d"
    private = tmp_path / "private"
    PrivateDir(private).init([CHALLENGE], seeds_per_challenge=1)
    nb = notebook(tmp_path / "sub" / "mount.ipynb", f"TARGET = {str(target)!r}", MOUNT_WRITE)
    out = tmp_path / "mount.graded.ipynb"
    try:
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", MOUNT_SCRIPT,
                               str(target), str(nb), str(private), str(out)], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        shutil.rmtree(holder, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert printed(out, "MOUNT") == "OSError"            # EROFS: read-only inside the sandbox
    assert seen["left"] == []


def test_mountinfo_escapes_are_decoded():
    assert unescape(rb"/srv/a\040b\011c\012d\134e") == "/srv/a b\tc\nd\\e"
