"""Paths, logging and process helpers shared by the driver's modules."""

from __future__ import annotations

import ctypes
import signal
import socket
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent(sig: int = signal.SIGTERM):
    """A preexec_fn: the child gets `sig` when the driver dies, so no server outlives a run."""

    def pre_exec():
        _libc.prctl(_PR_SET_PDEATHSIG, sig)

    return pre_exec
