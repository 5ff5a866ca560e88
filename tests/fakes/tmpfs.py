"""A small filesystem that fills up for real: a tmpfs in a private mount namespace.

The server runs under ``unshare --mount``, which mounts a tmpfs of a few MiB on its data
directory before exec-ing it: the mount is visible to that process only and vanishes with it, so
nothing of the machine's own mounts changes. The test fills and empties that filesystem through
``nsenter`` into the server's namespace. Where mount namespaces are not available (no root, a
container without CAP_SYS_ADMIN), :func:`tmpfs_unavailable` says why and the tests skip.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

_MOUNT = 'mount -t tmpfs -o size={size}m stolentee-test "$0" && exec "$@"'


def tmpfs_unavailable() -> str | None:
    """``None`` when a private tmpfs can be mounted here, else the reason it cannot."""
    for tool in ("unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    with tempfile.TemporaryDirectory() as directory:
        probe = subprocess.run(  # our own command line
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             _MOUNT.format(size=1), directory, "true"],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
    if probe.returncode != 0:
        return f"cannot mount a private tmpfs: {probe.stderr.strip() or probe.returncode}"
    return None


def tmpfs_prefix(mountpoint: Path, size_mb: int) -> list[str]:
    """The command prefix that runs a process with a ``size_mb`` tmpfs on ``mountpoint``."""
    return [
        "unshare", "--mount", "--propagation", "private",
        "sh", "-c", _MOUNT.format(size=int(size_mb)), str(mountpoint),
    ]  # fmt: skip


def inside(pid: int, *command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in the mount namespace of process ``pid`` (where its tmpfs is)."""
    return subprocess.run(  # our own command line
        ["nsenter", "--target", str(pid), "--mount", "--", *command],
        capture_output=True,
        text=True,
        check=False,
    )


def fill(pid: int, path: Path) -> None:
    """Write zeros to ``path`` inside the namespace until the filesystem is full."""
    inside(pid, "dd", "if=/dev/zero", f"of={path}", "bs=64k")  # ends with ENOSPC, as meant


def free_bytes(pid: int, path: Path) -> int:
    out = inside(pid, "df", "--output=avail", "-B1", str(path)).stdout.split()
    return int(out[-1])
