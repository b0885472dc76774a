"""Where the gateway spends its CPU under fan-out, and its memory per idle stream.

    python -m bench.profile cpu    [--clients 5000] [--rate 10] [--seconds 10]
    python -m bench.profile memory [--clients 5000]
    python -m bench.profile connect [--clients 10000] [--seconds 10]
    python -m bench.profile replay [--behind 300000] [--seconds 3]

``cpu`` samples the gateway with py-spy (from the peers' virtualenv) while N clients get
events at the given rate, and prints the hottest functions (own time and inclusive).
``memory`` runs the unchanged gateway under tracemalloc (``bench.traced_gateway``) and
prints what the heap gained per open stream, by allocation site. Raw output goes to
``bench/results/raw/``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

from bench import peers_env
from bench.procstat import raise_nofile, rss_bytes
from bench.producer import Producer
from bench.scenarios import Bench
from bench.servers import KEY, Server
from shared.local_redis import LocalRedis

BENCH = Path(__file__).resolve().parent
RAW = BENCH / "results" / "raw"


def summarize_collapsed(path: Path, top: int = 25) -> str:
    """py-spy's raw (collapsed) stacks → own-time and inclusive-time tables."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1] for f in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            incl[frame] += count
    lines = [f"{total} samples", "", "own time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in incl.most_common(top)]
    return "\n".join(lines)


def _pyspy(pid: int, seconds: float, out: Path) -> list[str]:
    return [
        str(peers_env.VENV / "bin" / "py-spy"), "record", "-p", str(pid), "-d",
        str(int(seconds)), "-r", "200", "-f", "raw", "-o", str(out), "--nonblocking",
    ]  # fmt: skip


async def connect(bench: Bench, clients: int, seconds: float) -> None:
    """Profile the gateway while N streams open at once (what a reconnect storm costs)."""
    out = RAW / f"profile-connect-{clients}.txt"
    async with bench.server("wxstream") as srv:
        spy = await asyncio.create_subprocess_exec(
            *_pyspy(srv.pid, seconds, out),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        t0 = time.monotonic()
        async with bench.swarm(srv, clients) as (_, ready):
            print(f"{ready.total('connected')} streams open in {time.monotonic() - t0:.1f} s")
        _, err = await spy.communicate()
    if spy.returncode != 0:
        raise SystemExit(f"py-spy failed: {err.decode()[-500:]}")
    print(f"raw stacks: {out}\n")
    print(summarize_collapsed(out))


async def replay(bench: Bench, behind: int, seconds: float) -> None:
    """Profile the gateway while one client replays ``behind`` events from Redis."""
    out = RAW / f"profile-replay-{behind}.txt"
    async with bench.server("wxstream") as srv:
        producer = Producer(bench.client, KEY, "stream")
        filled = await producer.prefill(behind + 1)
        await asyncio.sleep(1.5)
        spy = await asyncio.create_subprocess_exec(
            *_pyspy(srv.pid, seconds, out),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        async with bench.swarm(
            srv, 1, first_seq=filled.first_seq + 1, workers=1, last_id=filled.first_id
        ) as (swarm, ready):
            merged = await swarm.expect(filled.last_seq, 300.0)
            took = merged.last_recv() - ready.t0()
            print(f"{merged.total('received')} entries in {took:.2f} s")
        _, err = await spy.communicate()
    if spy.returncode != 0:
        raise SystemExit(f"py-spy failed: {err.decode()[-500:]}")
    print(f"raw stacks: {out}\n")
    print(summarize_collapsed(out))


async def cpu(bench: Bench, clients: int, rate: float, seconds: float) -> None:
    out = RAW / f"profile-cpu-{clients}x{rate:g}.txt"
    async with bench.server("wxstream") as srv, bench.swarm(srv, clients) as (swarm, ready):
        await srv.wait_subscribed(bench.client, ready.total("connected"), 60)
        producer = Producer(bench.client, KEY, "stream")
        task = asyncio.create_task(producer.run(rate, seconds + 3))
        await asyncio.sleep(1.0)
        spy = await asyncio.create_subprocess_exec(
            *_pyspy(srv.pid, seconds, out),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await spy.communicate()
        produced = await task
        await swarm.expect(produced.last_seq, bench.drain)
    if spy.returncode != 0:
        raise SystemExit(f"py-spy failed: {err.decode()[-500:]}")
    print(f"raw stacks: {out}\n")
    print(summarize_collapsed(out))


async def memory(bench: Bench, clients: int) -> None:
    prefix = RAW / "profile-mem"
    for old in RAW.glob("profile-mem-*.snap"):
        old.unlink()
    srv = Server("wxstream", bench.redis_url, bench.log_dir)
    cmd, env, secret = srv._command()
    cmd = [sys.executable, "-m", "bench.traced_gateway", str(prefix)]
    await bench.client.flushall()
    proc = await asyncio.to_thread(
        subprocess.Popen,
        cmd,
        cwd=BENCH.parent,
        env={**os.environ, **env},
        start_new_session=True,
    )
    srv.proc = proc
    try:
        await asyncio.to_thread(_wait_ready, srv, secret)
        async with bench.swarm(srv, 10, workers=1):  # warm up
            await asyncio.sleep(1.0)
        await asyncio.sleep(1.0)
        rss0 = rss_bytes(proc.pid)
        os.kill(proc.pid, signal.SIGUSR1)
        await asyncio.sleep(3.0)
        async with bench.swarm(srv, clients) as (_, ready):
            n = ready.total("connected")
            await asyncio.sleep(3.0)
            rss1 = rss_bytes(proc.pid)
            os.kill(proc.pid, signal.SIGUSR1)
            await asyncio.sleep(5.0)
    finally:
        await asyncio.to_thread(srv.stop)
    before = tracemalloc.Snapshot.load(f"{prefix}-0.snap")
    after = tracemalloc.Snapshot.load(f"{prefix}-1.snap")
    diff = after.compare_to(before, "lineno")
    traced = sum(d.size_diff for d in diff)
    print(f"{n} streams: RSS +{(rss1 - rss0) / n / 1024:.1f} KB/stream (under tracemalloc), ")
    print(f"Python heap +{traced / n / 1024:.2f} KB/stream by allocation site:\n")
    for d in diff[:30]:
        if d.size_diff <= 0:
            continue
        frame = d.traceback[0]
        print(
            f"  {d.size_diff / n:8.0f} B/stream  {d.count_diff / n:6.2f} blocks/stream  "
            f"{frame.filename.split('site-packages/')[-1]}:{frame.lineno}"
        )
    by_tb = after.compare_to(before, "traceback")
    print("\nthe five biggest, with where they were allocated from:")
    for d in by_tb[:5]:
        print(f"\n  {d.size_diff / n:.0f} B/stream")
        for line in d.traceback.format()[-12:]:
            print("    " + line)


def _wait_ready(srv: Server, secret: str) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(srv.url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    resp = httpx.post(srv.url + "/api/token", json={"secret": secret}, timeout=5)
    resp.raise_for_status()
    srv.headers = [f"Authorization: Bearer {resp.json()['token']}"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("what", choices=["cpu", "memory", "connect", "replay"])
    p.add_argument("--behind", type=int, default=300_000)
    p.add_argument("--clients", type=int, default=5000)
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--seconds", type=float, default=10.0)
    opts = p.parse_args(argv)
    raise_nofile()
    RAW.mkdir(parents=True, exist_ok=True)
    if opts.what != "memory":
        peers_env.ensure()

    async def run() -> None:
        redis = LocalRedis(RAW / "redis-profile")
        redis.start()
        bench = Bench(redis.url, RAW / "logs")
        try:
            if opts.what == "cpu":
                await cpu(bench, opts.clients, opts.rate, opts.seconds)
            elif opts.what == "replay":
                await replay(bench, opts.behind, opts.seconds)
            elif opts.what == "connect":
                await connect(bench, opts.clients, opts.seconds)
            else:
                await memory(bench, opts.clients)
        finally:
            await bench.aclose()
            redis.stop()

    asyncio.run(run())


if __name__ == "__main__":
    main()
