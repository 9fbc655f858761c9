"""wrk (Debian's 4.1) with bench/wrk/scenario.lua, which prints its summary as one JSON line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .common import BENCH

LUA = BENCH / "wrk" / "scenario.lua"


def threads(connections: int) -> int:
    return min(2, connections)


def write_ids_per_thread(prefix: Path, ids: list[int], connections: int) -> None:
    """The ids of a delete run, split between wrk's threads (`prefix`.1, `prefix`.2, ...), so
    that each id is deleted once."""
    count = threads(connections)
    for thread in range(count):
        Path(f"{prefix}.{thread + 1}").write_text("".join(f"{i}\n" for i in ids[thread::count]))


def run(base_url: str, mode: str, token: str, ids_file: Path, path: str | None, connections: int,
        seconds: int) -> dict:
    command = ["wrk", f"-t{threads(connections)}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
               "--latency", "-s", str(LUA), base_url.rstrip("/"), "--", mode, token, str(ids_file)]
    if path:
        command.append(path)
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    line = next((l for l in result.stdout.splitlines() if l.startswith("WRK_JSON ")), None)
    if result.returncode or not line:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr.strip()} {result.stdout[-500:]}")
    return json.loads(line[len("WRK_JSON "):])


def summarize(raw: dict) -> dict:
    seconds = raw["duration_us"] / 1e6
    pct = raw["latency_us"]["percentiles"]
    return {
        "requests": raw["requests"],
        "rps": round(raw["requests"] / seconds, 1) if seconds else 0.0,
        "p50_ms": pct["50"] / 1000,
        "p90_ms": pct["90"] / 1000,
        "p99_ms": pct["99"] / 1000,
        "errors": sum(raw["errors"].values()),
        "raw": raw,
    }


def version() -> str:
    result = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    text = (result.stdout + result.stderr).strip()
    return text.splitlines()[0].split(" Copyright")[0].strip() if text else "wrk"
