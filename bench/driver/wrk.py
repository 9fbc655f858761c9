"""wrk (Debian's 4.1) with bench/wrk/scenario.lua, which prints its summary as one JSON line."""

from __future__ import annotations

import json
import statistics
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


def combine(slices: list[dict]) -> dict:
    """One summary of a run measured in slices: counts summed; each latency percentile the
    median of the slices' (wrk keeps no histogram to merge), the slices' summaries beside."""
    if len(slices) == 1:
        return slices[0]
    latencies = [s["latency_us"] for s in slices]
    requests = sum(s["requests"] for s in slices)
    return {
        "requests": requests,
        "duration_us": sum(s["duration_us"] for s in slices),
        "bytes": sum(s["bytes"] for s in slices),
        "errors": {kind: sum(s["errors"][kind] for s in slices) for kind in slices[0]["errors"]},
        "latency_us": {
            "min": min(l["min"] for l in latencies),
            "max": max(l["max"] for l in latencies),
            "mean": round(sum(l["mean"] * s["requests"] for l, s in zip(latencies, slices)) / max(1, requests), 1),
            "stdev": statistics.median(l["stdev"] for l in latencies),
            "percentiles": {p: statistics.median(l["percentiles"][p] for l in latencies)
                            for p in latencies[0]["percentiles"]},
        },
        "slices": slices,
    }


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
