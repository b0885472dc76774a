# mypy: ignore-errors
"""The report's plots, drawn with matplotlib from the peers' virtualenv (not wxstream's).

    bench/.peers/venv/bin/python bench/plots.py RAW_JSON OUTDIR

Prints the name of each PNG it writes.
"""

import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

LABEL = {
    "wxstream": "wxstream gateway",
    "xread": "sse-starlette + XREAD/client",
    "flask-sse": "Flask-SSE (gevent, pub/sub)",
}
STYLE = {"wxstream": "o-", "xread": "s--", "flask-sse": "^:"}


def med(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None and "failed" not in r]
    return statistics.median(vals) if vals else None


def _save(fig, outdir, name):
    fig.tight_layout()
    fig.savefig(outdir / name, dpi=110)
    plt.close(fig)
    return [name]


def fanout(results, outdir):
    cases = results.get("fanout", [])
    if not cases:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    kinds = sorted({k for c in cases for k in c["runs"]}, key=list(LABEL).index)
    for kind in kinds:
        xs, p99, cpu = [], [], []
        for case in cases:
            runs = case["runs"].get(kind)
            if not runs:
                continue
            xs.append(case["clients"])
            p99.append(med(runs, "lag_p99_ms"))
            cpu.append(med(runs, "server_cpu"))
        axes[0].plot(
            xs, [v if v is not None else float("nan") for v in p99], STYLE[kind], label=LABEL[kind]
        )
        axes[1].plot(
            xs,
            [100 * v if v is not None else float("nan") for v in cpu],
            STYLE[kind],
            label=LABEL[kind],
        )
    rate = cases[0]["rate"]
    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="clients",
        ylabel="p99 delivery lag (ms)",
        title=f"Fan-out at {rate:g} events/s: p99 lag",
    )
    axes[0].axhline(100, color="grey", lw=0.8, ls="--")
    axes[0].text(axes[0].get_xlim()[0], 110, " target 100 ms", color="grey", fontsize=8)
    axes[1].set(
        xscale="log",
        xlabel="clients",
        ylabel="server CPU (% of one core)",
        title="Server CPU over the run",
    )
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, outdir, "fanout.png")


def idle(results, outdir):
    data = results.get("idle")
    if not data:
        return []
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    kinds = [k for k in LABEL if k in data]
    vals = [med(data[k], "kb_per_stream") or 0 for k in kinds]
    counts = [data[k][0].get("clients", 0) if data[k] else 0 for k in kinds]
    bars = ax.bar(
        [f"{LABEL[k]}\n({n:,} streams)" for k, n in zip(kinds, counts, strict=True)],
        vals,
        color=["#2a7", "#c84", "#58c"][: len(kinds)],
    )
    ax.bar_label(bars, fmt="%.1f KB")
    ax.axhline(12, color="grey", lw=0.8, ls="--")
    ax.set(ylabel="memory per idle stream (KB)", title="Idle streams: RSS per stream")
    ax.tick_params(axis="x", labelsize=8)
    return _save(fig, outdir, "idle_memory.png")


def saturation(results, outdir):
    data = results.get("saturation")
    if not data:
        return []
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for kind in [k for k in LABEL if k in data]:
        runs = [r for r in data[kind] if "steps" in r]
        if not runs:
            continue
        steps = runs[0]["steps"]
        xs = [s["deliveries_per_s"] for s in steps]
        ys = [s["lag_p99_ms"] if s["lag_p99_ms"] is not None else float("nan") for s in steps]
        ax.plot(xs, ys, STYLE[kind], label=LABEL[kind])
        for s, x, y in zip(steps, xs, ys, strict=True):
            ax.annotate(
                f"{s['rate']:g}/s", (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3)
            )
    limit = results.get("meta", {}).get("options", {}).get("sat_p99_ms", 1000)
    ax.axhline(limit, color="grey", lw=0.8, ls="--")
    clients = next(iter(data.values()))[0].get("clients", "?")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="deliveries/s (all clients)",
        ylabel="p99 delivery lag (ms)",
        title=f"Saturation, {clients} clients (first run's steps; label = events/s)",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, outdir, "saturation.png")


def main():
    results = json.loads(Path(sys.argv[1]).read_text())
    outdir = Path(sys.argv[2])
    for fn in (fanout, idle, saturation):
        for name in fn(results, outdir):
            print(name)


if __name__ == "__main__":
    main()
