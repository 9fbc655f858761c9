"""The chart: per connection count, the latency percentiles of every run (app solid, floor
dash-dot, native dashed, native with Spin's pool dotted; log scale) above the app's req/s ÷
floor and ÷ native per scenario."""

from __future__ import annotations

from pathlib import Path

from .scenarios import FLOOR_NAMES, SCENARIOS

LEVELS = ["50", "75", "90", "95", "99", "99.9"]
STYLES = {"app": "-", "floor": "-.", "native": "--", "native-spinpool": ":"}


def draw(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = doc["results"]
    connections = sorted({r["connections"] for r in results})
    fig, axes = plt.subplots(2, len(connections), figsize=(max(9, 6.5 * len(connections)), 11), squeeze=False,
                             sharey="row", gridspec_kw={"height_ratios": [3, 2]})
    colors = {name: plt.get_cmap("tab10")(i) for i, name in enumerate(SCENARIOS)}
    for column, c in enumerate(connections):
        latency, ratios = axes[0][column], axes[1][column]
        for r in results:
            if r["connections"] != c or "raw" not in r:
                continue
            pct = r["raw"]["latency_us"]["percentiles"]
            latency.plot(LEVELS, [max(pct[level], 1) / 1000 for level in LEVELS], STYLES.get(r["server"], "-"),
                         color=colors.get(r["scenario"]), marker="o", markersize=3,
                         label=f"{r['server']} {r['scenario']} ({r['rps']:.0f}/s)")
        latency.set_yscale("log")
        latency.set_title(f"{c} connection{'s' if c > 1 else ''}")
        latency.set_xlabel("percentile")
        latency.grid(True, which="both", alpha=0.3)
        latency.legend(fontsize=6, loc="upper left", ncol=2)

        app = [r for r in results if r["server"] == "app" and r["connections"] == c and "rps" in r]
        xs = range(len(app))
        for offset, key, label in ((-0.2, "rps_ratio_to_floor", "app ÷ floor"),
                                   (0.2, "rps_ratio_to_native", "app ÷ native")):
            ratios.bar([x + offset for x in xs], [r.get(key) or 0 for r in app], width=0.4, label=label)
        ratios.axhline(1.0, color="grey", linewidth=0.8)
        ratios.set_xticks(list(xs), [r["scenario"] for r in app], rotation=30, ha="right", fontsize=7)
        ratios.set_ylabel("req/s ratio")
        ratios.grid(True, axis="y", alpha=0.3)
        ratios.legend(fontsize=7)
    axes[0][0].set_ylabel("latency (ms, log scale)")
    floor = FLOOR_NAMES[doc["settings"]["floor"]]
    fig.suptitle(f"{doc['mode']} run, {doc['date']}, commit {doc['commit']}, app and {floor} on {doc['runtime']}, "
                 f"{doc['machine']['cpus']} CPUs\nsolid: app; dash-dot: floor; dashed: native; "
                 "dotted: native with Spin's pool policy", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
