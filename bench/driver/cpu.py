"""CPU time of a process tree from /proc: what the runtime and PostgreSQL each spend per request,
so a ratio's gap can be placed (the runtime and its components, or the database)."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, str, float]]:
    """Every process: its parent, its name, and its CPU seconds with those of the children it
    waited for (utime + stime + cutime + cstime)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # exited while listed
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        # After the name: state, ppid, ...; utime, stime, cutime and cstime are fields 14-17.
        fields = stat[stat.rindex(")") + 2:].split()
        found[int(entry)] = (int(fields[1]), name, sum(int(f) for f in fields[11:15]) / _TICKS)
    return found


def tree_seconds(root: int) -> float:
    """CPU seconds of `root` and its descendants, those still running and those reaped (a child's
    time moves into its parent's cutime when it is waited for, so nothing is counted twice)."""
    processes = _processes()
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


def child_named(parent: int, name: str) -> int | None:
    """The first child of `parent` called `name` (PostgreSQL's postmaster under its launcher)."""
    return next((pid for pid, (ppid, comm, _) in _processes().items() if ppid == parent and comm == name), None)
