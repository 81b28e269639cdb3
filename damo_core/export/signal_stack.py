"""A signal stack owned by this process, so OpenVINO's CPU plugins cannot leave a freed one.

Why this exists: on CPUs with AMX, every OpenVINO CPU plugin (one per ``ov.Core`` that
compiles for the CPU, and NNCF makes its own while quantising) maps an alternate signal
stack for the thread that created it and, when the plugin is destroyed, unmaps it, putting
back the stack it replaced only if its own is still the current one. Two plugins freed in
the order they were made (two runners, the first dropped first) therefore leave the thread's
alternate stack pointing at unmapped memory. CPython runs every Python-level signal handler
on the alternate stack (``SA_ONSTACK``), so the next Ctrl-C, SIGTERM or child exit seen by
a handler (PyTorch's DataLoader installs one for SIGCHLD) kills the process with SIGSEGV
instead. Seen with OpenVINO 2026.4 on an Intel Xeon with AMX: a spawned subprocess after an
``export --precision auto`` crashed the test run.

:func:`pin` installs a stack this module owns (never freed) on the calling thread after a
plugin may have been created. From then on no plugin's stack is current when it is
destroyed, so none restores a stack it no longer owns. Linux only; elsewhere a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import mmap
import sys
import threading

# Enough for an AMX signal frame (~11 KiB of XSAVE state) plus CPython's and faulthandler's
# handlers; the kernel's own minimum for this CPU is added on top.
STACK_BYTES = 64 * 1024
_AT_MINSIGSTKSZ = 51
_SS_DISABLE = 2


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int),
                ("ss_size", ctypes.c_size_t)]


_stacks: dict[int, tuple[mmap.mmap, int, int]] = {}  # thread id -> (buffer, address, size)
_lock = threading.Lock()


@functools.cache  # find_library runs ldconfig: once per process, not once per runner
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def current() -> tuple[int, int, bool]:
    """The calling thread's alternate signal stack: (address, size, disabled)."""
    libc = _libc()
    if libc is None:
        return 0, 0, True
    old = _StackT()
    if libc.sigaltstack(None, ctypes.byref(old)) != 0:
        raise OSError(ctypes.get_errno(), "sigaltstack query failed")
    return int(old.ss_sp or 0), int(old.ss_size), bool(old.ss_flags & _SS_DISABLE)


def is_mapped(address: int, size: int) -> bool:
    """Whether ``[address, address + size)`` lies inside one mapping of this process."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            start, end = (int(v, 16) for v in line.split(None, 1)[0].split("-"))
            if start <= address and address + size <= end:
                return True
    return False


def pin() -> None:
    """Make this thread's alternate signal stack one that lives as long as the process."""
    libc = _libc()
    if libc is None:
        return
    ident = threading.get_ident()
    with _lock:
        if ident not in _stacks:
            libc.getauxval.restype = ctypes.c_ulong
            size = STACK_BYTES + int(libc.getauxval(ctypes.c_ulong(_AT_MINSIGSTKSZ)))
            buffer = mmap.mmap(-1, size)
            address = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
            _stacks[ident] = (buffer, address, size)
        _, address, size = _stacks[ident]
    if current()[:2] == (address, size):
        return
    stack = _StackT(ctypes.c_void_p(address), 0, size)
    if libc.sigaltstack(ctypes.byref(stack), None) != 0:
        raise OSError(ctypes.get_errno(), "sigaltstack could not install the pinned stack")
