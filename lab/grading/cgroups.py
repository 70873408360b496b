"""One control group per sandboxed run: memory, process count and CPU limited for the whole run.

Per-process limits (RLIMIT_AS) do not stop six children holding 1 GiB each; a cgroup holds
every process the run starts, daemons included, so it also names what to kill at the end.
cgroup v2 is used where its controllers are enabled (`memory`, `pids`, `cpu` in
`cgroup.controllers` of the unified root); otherwise the v1 `memory`, `pids` and `cpu`
hierarchies, each group made under this process's own group (`/proc/self/cgroup`).
The CPU limit is a quota (`cpus` cores per period); the weight stays the default, so under
contention a run gets the same share as any other process (a lower weight measured here made
grading twice as slow on a loaded machine). Where none can be made, `RunCgroup.make` returns
None with the reason, and the result says so.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000
V1_CONTROLLERS = ("memory", "pids", "cpu")


def _own_paths() -> dict[str, str]:
    """controller (or "" for v2) -> this process's group path."""
    out = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            for name in names.split(",") if names else [""]:
                out[name] = path
    except OSError:
        pass
    return out


@dataclass
class RunCgroup:
    """The groups of one run (one per v1 controller, or one v2 group)."""

    version: int
    dirs: list[Path]
    memory_mb: int
    max_processes: int
    cpus: float

    @classmethod
    def make(cls, memory_mb: int, max_processes: int, cpus: float) -> tuple[RunCgroup | None, str]:
        """A fresh limited group for one run, or (None, why not)."""
        name = f"costlab-run-{uuid.uuid4().hex[:12]}"
        own = _own_paths()
        errors = []
        for attempt in (cls._v2, cls._v1):
            try:
                group = attempt(name, own, memory_mb, max_processes, cpus)
            except OSError as exc:
                errors.append(f"{exc.strerror or exc}: {getattr(exc, 'filename', '')}")
                continue
            if group is not None:
                return group, ""
        return None, "no cgroup could be made (" + ("; ".join(errors) or "no cgroup filesystem") + ")"

    @classmethod
    def _v2(cls, name, own, memory_mb, max_processes, cpus):
        base = ROOT / own.get("", "/").lstrip("/")
        if not (ROOT / "cgroup.controllers").is_file():
            return None
        enabled = set((base / "cgroup.subtree_control").read_text().split())
        if not {"memory", "pids", "cpu"} <= enabled:
            return None
        d = base / name
        d.mkdir()
        group = cls(2, [d], memory_mb, max_processes, cpus)
        try:
            (d / "memory.max").write_text(str(memory_mb * 2**20))
            if (d / "memory.swap.max").exists():
                (d / "memory.swap.max").write_text("0")
            (d / "pids.max").write_text(str(max_processes))
            (d / "cpu.max").write_text(f"{int(cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")
        except OSError:
            group.remove()
            raise
        return group

    @classmethod
    def _v1(cls, name, own, memory_mb, max_processes, cpus):
        if not all((ROOT / c).is_dir() for c in V1_CONTROLLERS):
            return None
        group = cls(1, [], memory_mb, max_processes, cpus)
        try:
            for ctrl in V1_CONTROLLERS:
                d = ROOT / ctrl / own.get(ctrl, "/").lstrip("/") / name
                d.mkdir()
                group.dirs.append(d)
            mem, pids, cpu = group.dirs
            (mem / "memory.limit_in_bytes").write_text(str(memory_mb * 2**20))
            if (mem / "memory.memsw.limit_in_bytes").exists():      # no escape into swap
                (mem / "memory.memsw.limit_in_bytes").write_text(str(memory_mb * 2**20))
            (pids / "pids.max").write_text(str(max_processes))
            (cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (cpu / "cpu.cfs_quota_us").write_text(str(int(cpus * CPU_PERIOD_US)))
        except OSError:
            group.remove()
            raise
        return group

    def enter(self) -> None:
        """Put the calling process (the run's first, after fork) in every group of the run."""
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(os.getpid()))

    def pids(self) -> set[int]:
        out = set()
        for d in self.dirs:
            try:
                out |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
            except OSError:
                continue
        return out

    def kill_all(self, wait_s: float = 5.0) -> int:
        """SIGKILL every process left in the run's group (daemons too); how many there were."""
        killed: set[int] = set()
        deadline = time.monotonic() + wait_s
        while (left := self.pids()) and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        return len(killed)

    def remove(self) -> None:
        for d in reversed(self.dirs):
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)

    def describe(self) -> str:
        return (f"cgroup v{self.version} per run: memory {self.memory_mb:,} MB, at most {self.max_processes} "
                f"processes, {self.cpus:g} CPU(s); removed afterwards")
