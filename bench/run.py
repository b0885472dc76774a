"""``python -m bench.run`` (``make bench``): every scenario, wxstream beside its peers.

Starts a private redis-server on a free port, builds the peers' virtualenv on first use,
runs each scenario ``--repeats`` times (servers interleaved, so machine noise falls on all
of them alike), writes the raw results to ``bench/results/raw/<stamp>.json`` and the report
to ``bench/REPORT.md`` with its plots. ``--report-only FILE`` redraws the report from raw
results. Every process it starts, it stops; it touches nothing but loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from bench import badge, peers_env, report
from bench.procstat import machine, raise_nofile, tool_version
from bench.scenarios import Bench, Result, fanout, idle, replay, saturation, storm
from bench.servers import KINDS, Kind
from shared.local_redis import LocalRedis, find_redis_server

BENCH = Path(__file__).resolve().parent
RAW = BENCH / "results" / "raw"


@dataclass
class Options:
    servers: list[Kind]
    scenarios: list[str]
    repeats: int
    workers: int
    drain: float
    sizes: list[int]
    peer_max_clients: int
    rate: float
    seconds: float
    hot: list[tuple[int, float]]
    idle_clients: int
    idle_peer_clients: int
    sat_clients: int
    sat_rates: list[float]
    sat_seconds: float
    sat_p99_ms: float
    storm_clients: int
    storm_back: int
    storm_timeout: float
    replay_behind: int
    badge_messages: int
    out: Path
    gateway_module: str
    gateway_env: dict[str, str]


SCENARIOS = ("fanout", "hot", "idle", "saturation", "storm", "replay", "badge")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _hot(text: str) -> list[tuple[int, float]]:
    out = []
    for item in text.split(","):
        n, _, rate = item.partition("x")
        out.append((int(n), float(rate)))
    return out


def parse(argv: Sequence[str] | None) -> tuple[Options, Path | None]:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--servers", default=env("BENCH_SERVERS", ",".join(KINDS)))
    p.add_argument("--scenarios", default=env("BENCH_SCENARIOS", ",".join(SCENARIOS)))
    p.add_argument("--repeats", type=int, default=int(env("BENCH_REPEATS", "3")))
    p.add_argument(
        "--workers",
        type=int,
        default=int(env("BENCH_WORKERS", "2")),
        help="load-generator processes",
    )
    p.add_argument(
        "--drain",
        type=float,
        default=8.0,
        help="seconds after the last event until a missing one counts as lost",
    )
    p.add_argument("--sizes", default=env("BENCH_SIZES", "100,1000,5000,10000"))
    p.add_argument(
        "--peer-max-clients",
        type=int,
        default=int(env("BENCH_PEER_MAX", "10000")),
        help="skip peers above this many clients",
    )
    p.add_argument("--rate", type=float, default=10.0, help="fan-out events/s")
    p.add_argument("--seconds", type=float, default=float(env("BENCH_SECONDS", "5")))
    p.add_argument("--hot", default="1000x100", help="extra fan-out cases, NxRATE,...")
    p.add_argument("--idle-clients", type=int, default=int(env("BENCH_IDLE", "20000")))
    p.add_argument("--idle-peer-clients", type=int, default=2000)
    p.add_argument("--sat-clients", type=int, default=1000)
    p.add_argument("--sat-rates", default="10,25,50,100,200,300,400,800,1600")
    p.add_argument("--sat-seconds", type=float, default=4.0)
    p.add_argument("--sat-p99-ms", type=float, default=1000.0)
    p.add_argument("--storm-clients", type=int, default=int(env("BENCH_STORM", "10000")))
    p.add_argument("--storm-back", type=int, default=300)
    p.add_argument("--storm-timeout", type=float, default=30.0)
    p.add_argument("--replay-behind", type=int, default=100_000)
    p.add_argument("--badge-messages", type=int, default=40)
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and one repetition: for trying the harness out",
    )
    p.add_argument("--out", type=Path, default=BENCH / "REPORT.md")
    p.add_argument(
        "--gateway-module",
        default="services.gateway",
        help="run another gateway entry point (an experiment module)",
    )
    p.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="WX_NAME=VALUE",
        help="extra gateway settings (repeatable)",
    )
    p.add_argument("--report-only", type=Path, default=None, metavar="RAW_JSON")
    a = p.parse_args(argv)
    if a.quick:
        a.repeats, a.sizes, a.idle_clients, a.idle_peer_clients = 1, "100,500", 1000, 300
        a.sat_rates, a.storm_clients, a.replay_behind, a.seconds = "10,50,200", 300, 5000, 2.0
        a.hot, a.badge_messages = "200x50", 10
    servers: list[Kind] = []
    for name in a.servers.split(","):
        if name not in KINDS:
            p.error(f"unknown server {name!r}: one of {', '.join(KINDS)}")
        servers.append(cast(Kind, name))
    scenarios = [s for s in a.scenarios.split(",") if s]
    for s in scenarios:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s!r}: one of {', '.join(SCENARIOS)}")
    opts = Options(
        servers=servers,
        scenarios=scenarios,
        repeats=max(1, a.repeats),
        workers=a.workers,
        drain=a.drain,
        sizes=_ints(a.sizes),
        peer_max_clients=a.peer_max_clients,
        rate=a.rate,
        seconds=a.seconds,
        hot=_hot(a.hot) if a.hot else [],
        idle_clients=a.idle_clients,
        idle_peer_clients=a.idle_peer_clients,
        sat_clients=a.sat_clients,
        sat_rates=_floats(a.sat_rates),
        sat_seconds=a.sat_seconds,
        sat_p99_ms=a.sat_p99_ms,
        storm_clients=a.storm_clients,
        storm_back=a.storm_back,
        storm_timeout=a.storm_timeout,
        replay_behind=a.replay_behind,
        badge_messages=a.badge_messages,
        out=a.out,
        gateway_module=a.gateway_module,
        gateway_env=dict(item.split("=", 1) for item in a.gateway_env),
    )
    return opts, a.report_only


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def repeated(
    title: str,
    kinds: Sequence[Kind],
    repeats: int,
    one: Callable[[Kind], Awaitable[Result]],
) -> dict[str, list[Result]]:
    """Run ``one(kind)`` ``repeats`` times per server, servers interleaved."""
    out: dict[str, list[Result]] = {k: [] for k in kinds}
    for rep in range(repeats):
        for kind in kinds:
            log(f"{title}: {kind} (run {rep + 1}/{repeats})")
            try:
                res = await one(kind)
            except Exception as exc:  # one failed run must not lose the others
                log(f"  FAILED: {type(exc).__name__}: {exc}")
                RAW.mkdir(parents=True, exist_ok=True)
                with (RAW / "failures.log").open("a") as f:
                    f.write(f"--- {title} {kind} run {rep + 1}\n{traceback.format_exc()}\n")
                res = {"kind": kind, "failed": f"{type(exc).__name__}: {exc}"}
            out[kind].append(res)
            log("  " + report.one_line(res))
    return out


async def run(opts: Options) -> dict[str, Any]:
    results: dict[str, Any] = {}
    peers = [k for k in opts.servers if k != "wxstream"]
    if peers:
        log("peers' virtualenv: bench/.peers/venv (built on first use)")
        await asyncio.to_thread(peers_env.ensure)
    started = time.time()
    results["meta"] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "machine": machine(),
        "versions": {
            "redis-server": tool_version([find_redis_server(), "--version"]),
            **_main_versions(),
            **{f"peer {k}": v for k, v in peers_env.versions().items()},
        },
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],  # raised in main()
        "code_at_start": code_state(),
    }
    code_dir = snapshot_code()
    redis = LocalRedis(BENCH / "results" / "raw" / "redis")
    redis.start()
    bench = Bench(
        redis.url,
        RAW / "logs",
        workers=opts.workers,
        drain=opts.drain,
        gateway_env=opts.gateway_env,
        gateway_module=opts.gateway_module,
        code_dir=code_dir,
    )
    try:
        await _scenarios(opts, bench, results)
    finally:
        await bench.aclose()
        redis.stop()
        shutil.rmtree(code_dir, ignore_errors=True)
    results["meta"]["duration_s"] = time.time() - started
    results["meta"]["code_at_end"] = code_state()
    return results


def snapshot_code() -> Path:
    """Copy services/, shared/ and tools/ as they are now: every server of this run imports
    this copy, so a colleague's commit mid-run cannot split the run between two versions."""
    # Outside the checkout: mypy and ruff must not see a second copy of the packages.
    dest = Path(tempfile.mkdtemp(prefix="wxstream-bench-code-"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("services", "shared", "tools"):
        shutil.copytree(BENCH.parent / name, dest / name, ignore=ignore)
    return dest


def code_state() -> dict[str, str]:
    """Which gateway code was measured: HEAD, and the services/ files that differ from it."""

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", *args], cwd=BENCH.parent, capture_output=True, text=True, check=False
        )
        return out.stdout.strip()

    return {
        "head": git("log", "-1", "--format=%h %ci %s")[:120],
        "services_changed": git("status", "--porcelain", "--", "services", "shared") or "none",
    }


def checkpoint(results: dict[str, Any]) -> None:
    """Keep what is measured so far: an interrupted run still leaves its data."""
    RAW.mkdir(parents=True, exist_ok=True)
    (RAW / "partial.json").write_text(json.dumps(results, indent=1, default=str))


async def _scenarios(opts: Options, bench: Bench, results: dict[str, Any]) -> None:
    kinds = opts.servers
    streams = [k for k in kinds if k != "flask-sse"]  # Flask-SSE keeps no history to resume
    if "fanout" in opts.scenarios:
        results["fanout"] = []
        for n in opts.sizes:
            ks = [k for k in kinds if k == "wxstream" or n <= opts.peer_max_clients]
            runs = await repeated(
                f"fan-out {n} clients x {opts.rate:g}/s",
                ks,
                opts.repeats,
                lambda k, n=n: fanout(bench, k, n, opts.rate, opts.seconds),  # type: ignore[misc]
            )
            results["fanout"].append({"clients": n, "rate": opts.rate, "runs": runs})
            checkpoint(results)
    if "hot" in opts.scenarios:
        results["hot"] = []
        for n, rate in opts.hot:
            runs = await repeated(
                f"fan-out {n} clients x {rate:g}/s",
                kinds,
                opts.repeats,
                lambda k, n=n, rate=rate: fanout(bench, k, n, rate, opts.seconds),  # type: ignore[misc]
            )
            results["hot"].append({"clients": n, "rate": rate, "runs": runs})
            checkpoint(results)
    if "idle" in opts.scenarios:
        results["idle"] = await repeated(
            "idle streams",
            kinds,
            opts.repeats,
            lambda k: idle(
                bench, k, opts.idle_clients if k == "wxstream" else opts.idle_peer_clients
            ),
        )
        checkpoint(results)
    if "saturation" in opts.scenarios:
        results["saturation"] = await repeated(
            f"saturation {opts.sat_clients} clients",
            kinds,
            opts.repeats,
            lambda k: saturation(
                bench, k, opts.sat_clients, opts.sat_rates, opts.sat_seconds, opts.sat_p99_ms
            ),
        )
        checkpoint(results)
    if "storm" in opts.scenarios:
        results["storm"] = await repeated(
            f"reconnect storm {opts.storm_clients} clients",
            streams,
            opts.repeats,
            lambda k: storm(
                bench, k, opts.storm_clients, opts.storm_back, opts.rate, opts.storm_timeout
            ),
        )
        checkpoint(results)
    if "replay" in opts.scenarios:
        results["replay"] = await repeated(
            f"replay {opts.replay_behind} behind",
            streams,
            opts.repeats,
            lambda k: replay(bench, k, opts.replay_behind),
        )
        checkpoint(results)
    if "badge" in opts.scenarios and "wxstream" in kinds:
        log("message to badge (simulator -> login -> notifier -> gateway)")
        results["badge"] = await badge.measure(bench, opts.badge_messages, opts.repeats)
        log("  " + report.one_line(results["badge"]))


def _main_versions() -> dict[str, str]:
    import importlib.metadata as md

    names = ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "redis", "hiredis")
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "-"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    opts, report_only = parse(argv)
    if report_only is not None:
        results = json.loads(report_only.read_text())
        report.write(results, opts.out)
        log(f"wrote {opts.out}")
        return 0

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through every finally: servers and Redis stop

    signal.signal(signal.SIGTERM, on_term)
    raise_nofile()
    RAW.mkdir(parents=True, exist_ok=True)
    try:
        results = asyncio.run(run(opts))
    except KeyboardInterrupt:
        log("interrupted: every server and Redis this run started is stopped")
        return 130
    stamp = time.strftime("%Y%m%d-%H%M%S")
    raw = RAW / f"{stamp}.json"
    raw.write_text(json.dumps(results, indent=1, default=str))
    log(f"raw results: {raw}")
    report.write(results, opts.out)
    log(f"wrote {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
