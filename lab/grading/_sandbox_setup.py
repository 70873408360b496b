"""Inside fresh namespaces, before the learner's command: build the sandbox's view of the filesystem.

Run by path (`python _sandbox_setup.py CONFIG_JSON -- argv...`, never importing `lab`) as the
namespace's root by `lab.grading.sandbox`. In order:

1. loopback up (the kernel's ZeroMQ channels need it);
2. a private /dev tmpfs (null, zero, full, random, urandom, its own shm); every path the run
   needs that lies inside a folder about to be hidden (the scratch folder, Python, costlab) is
   then bind-mounted, with the mounts under it, into a staging folder in it; a needed path
   inside another (a venv inside a checkout under /tmp) comes along with the outer one, since
   binding it back on its own would sit under the outer one's bind, out of reach;
3. each hidden folder (/tmp, /run, homes, the private folder, database socket folders, other
   learners' folders) covered by a fresh tmpfs, so neither files nor Unix sockets under it are
   reachable; the staged paths are moved back to where they were;
4. every reachable mount (one a lookup of its mount point lands on; mountinfo's octal escapes
   decoded: a path may hold spaces, tabs, newlines or backslashes) remounted read-only except
   the scratch folder, the own /tmp folders, /dev and /proc; then checked: any one still
   writable stops the run (fail closed, exit status 97);
5. exec `setpriv` dropping every capability, then the command.
"""

import json
import os
import re
import subprocess
import sys

FAILED = 97
_ESCAPE = re.compile(rb"\\([0-7]{3})")
_SKIP = ("/proc", "/dev")


def fail(message: str) -> None:
    print(f"costlab sandbox: {message}; not running the notebook", file=sys.stderr)
    sys.exit(FAILED)


def run(*argv: str) -> None:
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode:
        fail(f"{' '.join(argv)!r} failed: {done.stderr.decode(errors='replace').strip()[:300]}")


def unescape(field: bytes) -> str:
    """A mountinfo path field: `\\040` is a space, `\\011` a tab, `\\012` a newline, `\\134` a backslash."""
    return os.fsdecode(_ESCAPE.sub(lambda m: bytes([int(m.group(1), 8)]), field))


def mounts() -> list[tuple[int, str, str]]:
    """(mount ID, mount point, per-mount options) of every mount, in mountinfo's order."""
    with open("/proc/self/mountinfo", "rb") as fh:
        rows = [line.split(b" ") for line in fh.read().splitlines() if line]
    return [(int(r[0]), unescape(r[4]), r[5].decode()) for r in rows]


def reached_mount(path: str) -> int | None:
    """The ID of the mount a lookup of `path` lands on, None if nothing is there.

    mountinfo also lists mounts covered by a later mount at or above their mount point; no path
    leads into those, and remounting one by its path would act on the mount on top instead.
    """
    try:
        fd = os.open(path, os.O_PATH)
    except OSError:
        return None
    try:
        with open(f"/proc/self/fdinfo/{fd}") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("mnt_id:"))
    finally:
        os.close(fd)


def under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def stage_and_hide(cfg: dict) -> None:
    dev = os.path.join(cfg["scratch"], ".dev")
    os.makedirs(dev, exist_ok=True)
    run("mount", "-t", "tmpfs", "-o", "mode=0755,size=65536k,nosuid", "costlab-dev", dev)
    for name in ("null", "zero", "full", "random", "urandom"):
        open(os.path.join(dev, name), "w").close()
        run("mount", "--bind", f"/dev/{name}", os.path.join(dev, name))
    os.mkdir(os.path.join(dev, "shm"), 0o1777)
    os.chmod(os.path.join(dev, "shm"), 0o1777)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, os.path.join(dev, name))
    run("mount", "--move", dev, "/dev")     # first, so no path staged below holds the new /dev
    hidden = cfg["hide"]
    staged = []             # parents first; one inside another comes back with its parent's mounts
    for k in sorted({k for k in cfg["keep"] if os.path.isdir(k) and any(under(k, h) for h in hidden)}, key=len):
        if not any(under(k, parent) for parent in staged):
            staged.append(k)
    os.mkdir("/dev/.keep", 0o700)
    for i, path in enumerate(staged):
        os.mkdir(f"/dev/.keep/{i}")
        run("mount", "--rbind", path, f"/dev/.keep/{i}")
    for folder in sorted(hidden, key=len):
        if os.path.isdir(folder) and not os.path.islink(folder):
            size_kb = cfg["tmp_kb"] if folder in cfg["own_tmp"] else 64
            mode = "1777" if folder in cfg["own_tmp"] else "0755"
            opts = f"mode={mode},size={size_kb}k,nosuid,nodev"
            run("mount", "-t", "tmpfs", "-o", opts, "costlab-hidden", folder)
    for i, path in enumerate(staged):
        os.makedirs(path, exist_ok=True)
        run("mount", "--move", f"/dev/.keep/{i}", path)
        os.rmdir(f"/dev/.keep/{i}")
    os.rmdir("/dev/.keep")
    for folder in hidden:           # a hidden folder inside a path just bound back is covered again
        if any(under(folder, k) and folder != k for k in staged) and os.path.isdir(folder):
            run("mount", "-t", "tmpfs", "-o", "mode=0755,size=64k,nosuid,nodev", "costlab-hidden", folder)


def remount_read_only(cfg: dict) -> None:
    writable = [cfg["scratch"], *cfg["own_tmp"]]
    for p in ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"):
        if os.path.exists(p):
            run("mount", "--bind", p, p)
            run("mount", "-o", "remount,bind,ro", p)

    def reachable() -> dict[str, str]:
        return {point: opts for mount_id, point, opts in mounts()
                if not any(under(point, s) for s in _SKIP) and point not in writable
                and reached_mount(point) == mount_id}

    for point, opts in reachable().items():
        if "ro" in opts.split(","):
            continue
        keep = [o for o in opts.split(",") if o in ("nosuid", "nodev", "noexec")]   # locked flags stay
        run("mount", "-o", ",".join(["remount", "bind", "ro", *keep]), point)
    still = [p for p, opts in reachable().items() if "ro" not in opts.split(",")]
    if still:
        fail(f"{len(still)} mount(s) still writable, e.g. {still[0]!r}")


def main() -> None:
    cfg = json.loads(sys.argv[1])
    argv = sys.argv[sys.argv.index("--") + 1:]
    run("ip", "link", "set", "lo", "up")
    run("mount", "--bind", cfg["scratch"], cfg["scratch"])
    stage_and_hide(cfg)
    remount_read_only(cfg)
    os.execvp("setpriv", ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all", "--ambient-caps", "-all",
                          "--no-new-privs", "--", *argv])


if __name__ == "__main__":
    main()
