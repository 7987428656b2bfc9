"""Child processes that die with their parent.

Why: ``locpipe run`` spends most of its time in ffmpeg children. When the run is stopped
(Ctrl-C, ``kill``, a farm worker recycled, the OOM killer) an ffmpeg left behind keeps
encoding into the work folder for minutes. ``subprocess.run`` kills its child when the
waiting Python code is interrupted, but not when the parent dies outright; so on Linux each
child asks the kernel for SIGKILL when its parent goes (``prctl(PR_SET_PDEATHSIG)``).

The kernel ties the signal to the *thread* that started the child: use :func:`run_child`
for children that are waited for (as ``subprocess.run`` does), not for daemons started
from a short-lived thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[[], None] | None:
    """A ``preexec_fn`` setting PR_SET_PDEATHSIG, resolved now (a forked child must not load
    libraries or import modules); None where there is no such call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    sig = int(signal.SIGKILL)

    def die_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return die_with_parent


DIE_WITH_PARENT = _load_prctl()


def run_child(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, **kwargs)`` whose child is killed if this process dies."""
    if DIE_WITH_PARENT is not None and "preexec_fn" not in kwargs:
        kwargs["preexec_fn"] = DIE_WITH_PARENT
    return subprocess.run(cmd, **kwargs)  # noqa: S603, PLW1510 (argument lists; callers choose check)
