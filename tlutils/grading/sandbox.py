"""A sandbox per submission: bubblewrap namespaces plus resource limits (``prlimit``).

Inside, a submission sees the system read-only, the Python installation and the ``tlutils``
package read-only, and nothing else of the machine's own folders (homes, ``/work``, ``/srv``, the
course repository with its masters, the submissions, the grades): those are replaced by empty
``tmpfs`` mounts. It may write only to its own scratch folder (and to a private ``/tmp``), has no
network (its own network namespace, loopback only), and runs in its own PID namespace, so every
process it starts dies with the run. When the grader runs as root, the sandbox also drops to an
unprivileged user id of its own. Limits: address space per process, number of processes, CPU
seconds, file size and open files (:class:`Limits`).
"""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

INNER_BOX = "/tmp/tlutils-box"   # where a submission's scratch folder appears inside the sandbox
SYSTEM_DIRS = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt", "var", "sys", "proc",
               "dev", "boot", "nix", "snap"}
HOW_TO_GET_ONE = ("install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`, which `make setup` does when "
                  "run as root; it needs Linux with user namespaces enabled), or grade without a sandbox with "
                  "--no-sandbox (student code then runs with your own rights: only for code you trust)")
FIRST_UID = 200_000              # sandboxes of a grader running as root get user ids from here
UID_RANGE = 50_000
# Two graders running at once (two test workers, two terminals) must not share user ids, or one's
# process limit and leftover search would count the other's processes: each process starts at its
# own offset in the range.
_uids = itertools.count((os.getpid() % (UID_RANGE // 100)) * 100)
_uid_lock = threading.Lock()
_issued: set[int] = set()


def issued_uids() -> frozenset[int]:
    """The user ids this process has given its sandboxes so far (running as root)."""
    with _uid_lock:
        return frozenset(_issued)


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run (each process: memory, CPU; the run: processes)."""

    memory_gb: float = 4.0          # memory (private writable data, RLIMIT_DATA) of each process
    processes: int = 256            # processes and threads of the run
    cpu_s: float = 1800.0           # CPU seconds of each process
    file_mb: float = 1000.0         # largest file a process may write
    open_files: int = 1024
    tmp_mb: float = 1024.0          # the private /tmp and /dev/shm (memory-backed), each

    def __post_init__(self) -> None:
        if not (self.memory_gb > 0 and self.processes > 0 and self.cpu_s > 0 and self.file_mb > 0 and self.open_files > 0
                and self.tmp_mb > 0):
            raise ValueError(f"every limit must be positive: {self}")


@lru_cache(maxsize=1)
def sandbox_problem() -> str | None:
    """Why no sandbox can be had on this machine (``None``: bubblewrap works)."""
    if not sys.platform.startswith("linux"):
        return f"the sandbox needs Linux (this is {sys.platform})"
    for tool in ("bwrap", "prlimit") + (("setpriv",) if os.geteuid() == 0 else ()):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    cmd = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-net", "--unshare-pid",
           *([] if os.geteuid() == 0 else ["--unshare-user"]), "--die-with-parent", "true"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bubblewrap does not start ({e})"
    if r.returncode != 0:
        return f"bubblewrap cannot create namespaces here ({r.stderr.strip()[:200]})"
    return None


def _tasks_of_uid(uid: int) -> int:
    """Processes and threads the user already runs (RLIMIT_NPROC counts them all)."""
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    n += len(os.listdir(f"/proc/{pid}/task"))
            except OSError:
                continue
    return n


def _hidden_and_visible() -> tuple[list[str], list[str]]:
    """Top-level folders to hide, and the folders inside them to show again read-only."""
    import tlutils

    hide = sorted(f"/{e.name}" for e in os.scandir("/") if e.is_dir(follow_symlinks=False) and e.name not in SYSTEM_DIRS)
    hide += ["/var/tmp"]
    show = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    show.add(str(Path(tlutils.__file__).resolve().parent))
    # a package installed outside the prefixes (a user site, PYTHONPATH) other than the course checkout
    show.update(os.path.realpath(p) for p in sys.path if p and p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p))
    top_hidden = {h.split("/")[1] for h in hide}
    show = {p for p in show if p.split("/")[1] in top_hidden}
    # a folder inside another shown one needs no mount of its own
    show = {p for p in show if not any(p != q and p.startswith(q + "/") for q in show)}
    return hide, sorted(show)


def wrap(cmd: list[str], box: Path, limits: Limits, sandbox: bool) -> list[str]:
    """``cmd`` inside a sandbox whose writable scratch folder is ``box`` (seen as :data:`INNER_BOX`),
    under ``limits``; with ``sandbox=False`` only the limits apply (when ``prlimit`` exists)."""
    rl = [f"--data={int(limits.memory_gb * 2**30)}", f"--cpu={int(limits.cpu_s)}",
          f"--fsize={int(limits.file_mb * 2**20)}", f"--nofile={limits.open_files}"]
    if not sandbox:
        return (["prlimit", *rl, "--"] if shutil.which("prlimit") else []) + cmd
    hide, show = _hidden_and_visible()
    args = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for h in hide:  # empty, and too small to fill the memory with
        args += ["--size", str(2**20), "--tmpfs", h]
    tmp_size = str(int(limits.tmp_mb * 2**20))
    args += ["--perms", "1777", "--size", tmp_size, "--tmpfs", "/dev/shm",
             "--perms", "1777", "--size", tmp_size, "--tmpfs", "/tmp"]
    # after the tmpfs mounts, so that a Python or course checkout under /tmp stays visible
    for s in show:  # bwrap would create the folders above a mount point readable by root only
        parents = [str(q) for q in reversed(Path(s).parents) if len(q.parts) > 2]
        for q in parents:
            args += ["--perms", "0755", "--dir", q]
        args += ["--ro-bind", s, s]
    args += ["--bind", str(box), INNER_BOX, "--chdir", INNER_BOX,
             "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
             "--die-with-parent", "--new-session"]
    if os.geteuid() == 0:
        with _uid_lock:
            uid = FIRST_UID + next(_uids) % UID_RANGE
            _issued.add(uid)
        for p in [box, *box.rglob("*")]:
            os.chown(p, uid, uid, follow_symlinks=False)
        drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs", "--"]
        nproc = limits.processes
    else:
        args += ["--unshare-user"]
        drop = []
        nproc = limits.processes + _tasks_of_uid(os.getuid())
    return args + ["--", *drop, "prlimit", *rl, f"--nproc={nproc}", "--", *cmd]


def inner(box: Path, path: Path, sandbox: bool) -> str:
    """How ``path`` (inside ``box``) is named for a process in the sandbox."""
    return str(Path(INNER_BOX) / path.relative_to(box)) if sandbox else str(path)
