"""CPU time of process trees from /proc: what the runtime and PostgreSQL each spend per request,
so a ratio's gap can be placed (the runtime and its components, or the database)."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")

# How many times a reading is taken again when a child was reaped while /proc was read.
_ATTEMPTS = 5


def _stat(pid: int | str) -> tuple[str, list[str]]:
    """A process's name and the fields of /proc/PID/stat after it (state, ppid, ...; utime,
    stime, cutime and cstime are 11 to 14 there, fields 14-17 of the file)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()


def _processes() -> dict[int, tuple[int, str, float]]:
    """Every process: its parent, its name, and its CPU seconds with those of the children it
    waited for (utime + stime + cutime + cstime)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            name, fields = _stat(entry)
        except OSError:
            continue  # exited while listed
        found[int(entry)] = (int(fields[1]), name, sum(int(f) for f in fields[11:15]) / _TICKS)
    return found


def _tree(processes: dict[int, tuple[int, str, float]], root: int) -> float:
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        if pid in processes:
            total += processes[pid][2]
        stack.extend(children.get(pid, ()))
    return total


def _reaped_ticks(pid: int) -> int | None:
    """The CPU time of the children `pid` has waited for (cutime + cstime)."""
    try:
        _, fields = _stat(pid)
    except OSError:
        return None
    return int(fields[13]) + int(fields[14])


def trees_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each root's tree (the root and its descendants, running or reaped: a
    child's time moves into its parent's cutime when it is waited for, so nothing is counted
    twice), from one reading of /proc. A child reaped while /proc is read would be missed or
    counted twice, so the reading is taken again while a root reaped a child during it (an
    autovacuum worker that ends, a backend that closes). Roots that are gone are left out."""
    for _ in range(_ATTEMPTS):
        before = {pid: _reaped_ticks(pid) for pid in roots.values()}
        processes = _processes()
        if all(_reaped_ticks(pid) == ticks for pid, ticks in before.items()):
            break
    return {name: _tree(processes, pid) for name, pid in roots.items() if pid in processes}


def child_named(parent: int, name: str) -> int | None:
    """The first child of `parent` called `name` (PostgreSQL's postmaster under its launcher)."""
    return next((pid for pid, (ppid, comm, _) in _processes().items() if ppid == parent and comm == name), None)
