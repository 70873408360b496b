"""Running an untrusted command (papermill on a learner's notebook) with the OS's isolation.

Modes, best first (`isolation_mode()` picks the first this machine allows):

- "namespaces" (root) / "user-namespaces" (unprivileged, `unshare -U -r`): new network,
  mount and PID namespaces. Inside: loopback up (the kernel's ZeroMQ channels need it) and
  no other interface, so no network and none of the host's 127.0.0.1 services; each hidden
  folder (private seeds, leaderboard database, database sockets) covered by an empty
  read-only tmpfs; every other mount remounted read-only except the scratch folder; a fresh
  /proc that shows only the sandbox's processes (with /proc/sys read-only); a minimal /dev
  (null, zero, full, random, urandom, shm); then every capability dropped
  (`setpriv --bounding-set -all --no-new-privs`) before papermill starts, so the notebook
  cannot mount, unmount or reconfigure any of that. When the time is up the PID namespace's
  first process is killed and the kernel takes every process in it along.
- "process": a plain child process (no unshare here). The notebook can reach the network
  and read whatever the grader's user can read; only the limits below apply. The grade
  result says so.

In every mode: a scrubbed environment (the caller's `env`, nothing inherited), a wall-clock
timeout, RLIMIT_AS (address space, inherited by the kernel process papermill starts),
RLIMIT_FSIZE, no core files, and a scratch working folder.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import ConfigError

MODES = ("namespaces", "user-namespaces", "process")
MARKER_ENV = "COSTLAB_SANDBOX_ID"
TAIL_BYTES = 20_000

_SETUP = r"""
set -e
scratch=$1; shift
n=$1; shift
ip link set lo up
mount --bind "$scratch" "$scratch"
i=0
while [ "$i" -lt "$n" ]; do
  d=$1; shift; i=$((i+1))
  [ -d "$d" ] && mount -t tmpfs -o ro,size=4k,mode=0555 costlab-hidden "$d"
done
dev="$scratch/.dev"
mkdir -p "$dev"
mount -t tmpfs -o mode=0755,size=65536k,nosuid costlab-dev "$dev"
for f in null zero full random urandom; do : > "$dev/$f"; mount --bind "/dev/$f" "$dev/$f"; done
mkdir -m 1777 "$dev/shm"
ln -s /proc/self/fd "$dev/fd"; ln -s /proc/self/fd/0 "$dev/stdin"
ln -s /proc/self/fd/1 "$dev/stdout"; ln -s /proc/self/fd/2 "$dev/stderr"
mount --move "$dev" /dev
for p in /proc/sys /proc/sysrq-trigger /proc/irq /proc/bus /proc/fs; do
  if [ -e "$p" ]; then mount --bind "$p" "$p" && mount -o remount,bind,ro "$p" || true; fi
done
awk '{print $5}' /proc/self/mountinfo | while read -r m; do
  case "$m" in
    /dev|/dev/*|/proc|/proc/*|"$scratch") ;;
    *) mount -o remount,bind,ro "$m" 2>/dev/null || true ;;
  esac
done
[ "$1" = "--" ] && shift
exec setpriv --bounding-set -all --inh-caps -all --ambient-caps -all --no-new-privs -- "$@"
"""

_UNSHARE = {
    "namespaces": ["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc"],
    "user-namespaces": ["unshare", "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork",
                        "--kill-child", "--mount-proc"],
}


@dataclass(frozen=True)
class Limits:
    """What one sandboxed run may use."""

    timeout_s: float = 120.0
    memory_mb: int = 2048            # RLIMIT_AS: address space of every process, the kernel included
    file_size_mb: int = 256          # RLIMIT_FSIZE: largest file it may write


@dataclass
class SandboxRun:
    """How the command ended, and what was isolated."""

    returncode: int | None
    timed_out: bool
    seconds: float
    mode: str
    isolation: dict
    stdout: str = ""
    stderr: str = ""
    notes: list[str] = field(default_factory=list)


def describe(mode: str, hidden: list[str]) -> dict:
    """What a mode isolates, for the grade result and the docs."""
    ns = mode != "process"
    return {
        "mode": mode,
        "network": "none (own network namespace, loopback only)" if ns else "NOT isolated",
        "private_folders_hidden": hidden if ns else [],
        "filesystem": "read-only except the scratch folder" if ns else "NOT isolated (grader's user rights)",
        "processes": "own PID namespace, capabilities dropped" if ns else "same PID namespace",
        "environment": "scrubbed",
        "limits": "wall-clock timeout, RLIMIT_AS, RLIMIT_FSIZE, no core files",
    }


@functools.cache
def _mode_works(mode: str) -> bool:
    if mode == "process":
        return True
    if not shutil.which("unshare") or not shutil.which("setpriv") or not shutil.which("ip"):
        return False
    probe = [*_UNSHARE[mode], "sh", "-c", "ip link set lo up && mount -t tmpfs none /mnt && setpriv "
             "--bounding-set -all --no-new-privs -- true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def isolation_mode(requested: str = "auto") -> str:
    """The best available mode, or `requested` (an error if this machine cannot do it)."""
    if requested == "auto":
        order = ("namespaces", "user-namespaces") if os.geteuid() == 0 else ("user-namespaces",)
        return next((m for m in order if _mode_works(m)), "process")
    if requested not in MODES:
        raise ValueError(f"isolation must be auto or one of {', '.join(MODES)}, got {requested!r}")
    if not _mode_works(requested):
        raise ConfigError(f"isolation {requested!r} is not available on this machine (needs unshare, setpriv, "
                          "ip and the right to create namespaces)")
    return requested


def _limit(limits: Limits):
    def preexec():
        mem = limits.memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        size = limits.file_size_mb * 2**20
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    return preexec


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - TAIL_BYTES))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _kill_marked(marker: str) -> int:
    """Kill leftover processes carrying our marker (the kernel papermill started, in process mode)."""
    killed = 0
    needle = f"{MARKER_ENV}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
        except (OSError, ValueError):
            continue
    return killed


def covers(folder: str | Path, path: str | Path) -> bool:
    """True if hiding `folder` would hide `path` (it is the path or one of its parents)."""
    folder, path = Path(folder).resolve(), Path(path).resolve()
    return folder == path or folder in path.parents


def run_isolated(argv: list[str], *, scratch: Path, logs: Path, env: dict, limits: Limits,
                 hide: list[str] = (), keep_visible: list[str] = (), mode: str = "auto") -> SandboxRun:
    """Run argv in the scratch folder under the best isolation available; never raises for the command.

    Folders in `hide` are covered by an empty read-only tmpfs, except one that would also hide
    the scratch folder or a path in `keep_visible` (the run needs those): it is left visible
    and named in `notes`.
    """
    mode = isolation_mode(mode)
    marker = uuid.uuid4().hex
    env = {**env, MARKER_ENV: marker}
    needed = [scratch, *keep_visible]
    hidden, notes = [], []
    for h in sorted({str(Path(h).resolve()) for h in hide if Path(h).is_dir()}):
        if any(covers(h, n) for n in needed):
            notes.append(f"not hidden (the run needs what is inside): {h}")
        else:
            hidden.append(h)
    if mode == "process":
        cmd = list(argv)
    else:
        cmd = [*_UNSHARE[mode], "sh", "-c", _SETUP, "costlab-sandbox", str(scratch), str(len(hidden)),
               *hidden, "--", *argv]
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / "stdout.txt", logs / "stderr.txt"
    start = time.perf_counter()
    timed_out = False
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=scratch, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                preexec_fn=_limit(limits), start_new_session=True)
        try:
            proc.wait(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    leftovers = _kill_marked(marker)
    if leftovers:
        notes.append(f"killed {leftovers} leftover process(es)")
    return SandboxRun(returncode=proc.returncode, timed_out=timed_out, seconds=time.perf_counter() - start,
                      mode=mode, isolation=describe(mode, hidden), stdout=_tail(out_path), stderr=_tail(err_path),
                      notes=notes)
