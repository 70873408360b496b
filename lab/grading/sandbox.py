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
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import ConfigError
from lab.grading.cgroups import RunCgroup

MODES = ("namespaces", "user-namespaces", "process")
MARKER_ENV = "COSTLAB_SANDBOX_ID"
TAIL_BYTES = 20_000
SETUP_FAILED = 97            # _sandbox_setup.FAILED: a mount could not be made as asked (fail closed)

SETUP_SCRIPT = Path(__file__).with_name("_sandbox_setup.py")
#: shared folders every namespaced run gets its own empty view of: files and Unix sockets under them
#: (docker, D-Bus, databases, other runs' scratch) stay out of reach; /tmp and /var/tmp are private tmpfs
SHARED_DIRS = ("/tmp", "/var/tmp", "/run", "/var/run", "/home", "/root", "/srv", "/mnt", "/media", "/var/lib",
               "/var/spool", "/var/mail")
OWN_TMP = ("/tmp", "/var/tmp")
TMP_KB = 256 * 1024

_UNSHARE = {
    "namespaces": ["unshare", "--net", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child",
                   "--mount-proc"],
    "user-namespaces": ["unshare", "--user", "--map-root-user", "--net", "--mount", "--pid", "--ipc", "--uts",
                        "--fork", "--kill-child", "--mount-proc"],
}


@dataclass(frozen=True)
class Limits:
    """What one sandboxed run may use."""

    timeout_s: float = 120.0
    memory_mb: int = 2048            # RLIMIT_AS per process, and the run's cgroup memory limit (all processes)
    file_size_mb: int = 256          # RLIMIT_FSIZE: largest file it may write
    max_processes: int = 256         # the run's cgroup pids limit
    cpus: float = 1.0                # the run's cgroup CPU quota (cores)

    def __post_init__(self):
        for name, low in (("timeout_s", 0.1), ("memory_mb", 64), ("file_size_mb", 1), ("max_processes", 16),
                          ("cpus", 0.01)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
                raise ConfigError(f"{name}: expected a number >= {low:g}, got {value!r:.40}")


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

    @property
    def setup_failed(self) -> bool:
        """The sandbox could not be set up (fail closed): the command never ran. An unisolated run
        has no set-up step, so there its exit status is the command's own."""
        return self.returncode == SETUP_FAILED and self.mode != "process"


def describe(mode: str, hidden: list[str], cgroup: str) -> dict:
    """What a mode isolates, for the grade result and the docs."""
    ns = mode != "process"
    return {
        "mode": mode,
        "network": "none (own network namespace, loopback only)" if ns else "NOT isolated",
        "private_folders_hidden": hidden if ns else [],
        "filesystem": ("read-only except the scratch folder and a private /tmp; shared folders (/tmp, /run, homes) "
                       "replaced by empty tmpfs, so their Unix sockets are unreachable" if ns
                       else "NOT isolated (grader's user rights)"),
        "processes": "own PID namespace, capabilities dropped" if ns else "same PID namespace",
        "ipc": "own IPC namespace (SysV shared memory, semaphores, message queues)" if ns else "NOT isolated",
        "environment": "scrubbed",
        "limits": "wall-clock timeout, RLIMIT_AS, RLIMIT_FSIZE, no core files",
        "cgroup": cgroup,
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


def _limit(limits: Limits, cgroup: RunCgroup | None):
    def preexec():
        if cgroup is not None:
            cgroup.enter()             # before exec: everything the run starts is in the group
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

    Folders in `hide` and SHARED_DIRS are covered by an empty tmpfs; what the run needs inside
    them (the scratch folder, `keep_visible`) is bound back in. A hidden folder that is the
    scratch folder or a needed path itself (or lies inside one) cannot be hidden: it is named in
    `notes`. The run gets its own cgroup where one can be made; when the command ends, every
    process left in it (or in its process group, or carrying the run's marker) is killed.
    """
    mode = isolation_mode(mode)
    marker = uuid.uuid4().hex
    env = {**env, MARKER_ENV: marker}
    needed = [str(Path(p).resolve()) for p in (scratch, *keep_visible)]
    hidden, notes = [], []
    for h in sorted({str(Path(h).resolve()) for h in hide if Path(h).is_dir()}):
        if h in needed:
            notes.append(f"not hidden (the run needs it): {h}")
        else:
            hidden.append(h)
    shared = sorted({d for d in SHARED_DIRS if Path(d).is_dir() and not Path(d).is_symlink()} - set(hidden))
    needed = [n for n in needed if not any(covers(n, d) for d in shared)]    # never bind a whole /tmp back
    cgroup, why = RunCgroup.make(limits.memory_mb, limits.max_processes, limits.cpus)
    if mode == "process":
        cmd = list(argv)
    else:
        cfg = {"scratch": str(scratch.resolve()), "hide": sorted({*hidden, *shared}), "keep": needed,
               "own_tmp": list(OWN_TMP), "tmp_kb": TMP_KB}
        cmd = [*_UNSHARE[mode], sys.executable, "-I", "-S", str(SETUP_SCRIPT), json.dumps(cfg), "--", *argv]
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / "stdout.txt", logs / "stderr.txt"
    start = time.perf_counter()
    timed_out = False
    try:
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(cmd, cwd=scratch, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    preexec_fn=_limit(limits, cgroup), start_new_session=True)
            try:
                proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            _killpg(proc.pid)
            proc.wait()
        leftovers = (cgroup.kill_all() if cgroup else 0) + _kill_marked(marker)
    finally:
        if cgroup is not None:
            cgroup.kill_all()
            cgroup.remove()
    if leftovers:
        notes.append(f"killed {leftovers} leftover process(es)")
    described = describe(mode, hidden, cgroup.describe() if cgroup else f"NONE: {why}; limits are per process")
    run = SandboxRun(returncode=proc.returncode, timed_out=timed_out, seconds=time.perf_counter() - start,
                     mode=mode, isolation=described, stdout=_tail(out_path), stderr=_tail(err_path), notes=notes)
    if run.setup_failed:
        notes.append("the sandbox could not be set up (see stderr): the notebook did not run")
    return run


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
