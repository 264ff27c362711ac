"""``raftkv bench``: a closed-loop load generator for a running cluster.

Theory of operation
-------------------
``C`` clients each keep exactly one request in flight over HTTP (keep-alive),
the way a user's program would: send, wait for the answer, send the next.
Each client is one coroutine with its own connection. By default that is a
lean HTTP/1.1 protocol object (``--http raw``: write ``GET path``, frame
the answer with httptools' parser, skip its body) because the load generator
shares the machine with the cluster it measures and every microsecond it
spends is taken from the nodes; ``--http aiohttp`` uses one shared aiohttp
session instead (about three times the client CPU per request): both are
:mod:`.bench_clients`. Nothing is created per request except the request
itself.

Operations are drawn from a weighted mix of ``set`` (a write, committed and
applied before the answer), ``get`` (a linearizable read: ReadIndex on the
leader) and ``stale`` (``get?stale=true``: the node's local copy). Keys are
unique per write (``--keys 0``) or drawn uniformly from a key space of
``--keys K`` (``--prefill`` writes every key of it first, untimed, so reads
find values). Values are ``--value-size`` bytes.

The run lasts ``--duration`` seconds or ``--requests`` operations in all.
Every answer other than 2xx (a 404 of a read included) and every transport
error counts as an error, by kind; its latency is not part of the figures.
The result is operations per second, latency p50/p90/p99/max in ms, error
counts, and how much CPU the load generator itself used, as a share of one
core: on a small machine a client that eats a core is part of the result.

``--procs P`` splits the clients over P worker processes (forked), each with
its own event loop, for when one Python process cannot generate the load;
workers report progress once a second and their latencies at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import random
import resource
import sys
import time
from array import array
from dataclasses import dataclass, field
from urllib.parse import quote

from .bench_clients import AiohttpClients, RawClient, _base

OPS = ("set", "get", "stale")


@dataclass
class Plan:
    addrs: list[str]
    clients: int = 1
    duration: float | None = 10.0
    requests: int | None = None
    keys: int = 0
    value_size: int = 64
    mix: dict[str, float] = field(default_factory=lambda: {"set": 1.0})
    prefix: str = "bench"
    timeout: float = 30.0
    seed: int | None = None
    http: str = "raw"
    sequential: bool = False  # keys 0..keys-1 in order, each once (prefill)
    pump: bool = False  # keys "1".."N" in order, each once, value = key (scripts/pump.sh)
    cacert: str | None = None  # a TLS cluster's CA (PEM): https, verified against it


@dataclass
class Tally:
    """What one worker measured: latencies (seconds) per op, errors by kind."""
    lat: dict[str, array] = field(default_factory=lambda: {op: array("d") for op in OPS})
    errors: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    @property
    def ok(self) -> int:
        return sum(len(a) for a in self.lat.values())

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


def parse_mix(text: str) -> dict[str, float]:
    """``set=70,get=20,stale=10`` (weights, any scale) -> {op: weight}."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, weight = part.partition("=")
        name = name.strip()
        if name not in OPS:
            raise ValueError(f"unknown operation {name!r} in --mix (use {', '.join(OPS)})")
        try:
            w = float(weight) if sep else 1.0
        except ValueError:
            raise ValueError(f"bad weight {weight!r} for {name} in --mix") from None
        if w < 0 or not math.isfinite(w):
            raise ValueError(f"bad weight {weight!r} for {name} in --mix")
        mix[name] = mix.get(name, 0.0) + w
    if not mix or sum(mix.values()) <= 0:
        raise ValueError("--mix has no operation with a positive weight")
    return {k: v for k, v in mix.items() if v > 0}


# ---------------------------------------------------------------------- worker


def _clients(plan: Plan):
    if plan.http == "aiohttp":
        shared = AiohttpClients(plan.timeout, plan.cacert)
        return shared.client, shared.close
    async def nothing() -> None:
        return None
    return (lambda base: RawClient(base, plan.timeout, plan.cacert)), nothing


async def run_clients(plan: Plan, first_client: int, count: int, progress=None,
                      budget: int | None = None) -> Tally:
    """Run ``count`` closed-loop clients (numbered from ``first_client``);
    ``progress(ok, errors)`` is called about once a second."""
    tally = Tally()
    value = quote(("v" * plan.value_size)[:plan.value_size], safe="")
    ops = list(plan.mix)
    weights = [plan.mix[o] for o in ops]
    only = ops[0] if len(ops) == 1 else None
    bases = [_base(a, plan.cacert) for a in plan.addrs]
    remaining = [budget if budget is not None else -1]
    loop = asyncio.get_running_loop()
    start = loop.time()
    stop_at = start + plan.duration if plan.duration else math.inf
    done = asyncio.Event()
    make_client, close_all = _clients(plan)
    counter = itertools.count(1 if plan.pump else 0)

    def key_name(n: int) -> str:
        return f"{plan.prefix}-{n}"

    async def client(cid: int) -> None:
        http = make_client(bases[cid % len(bases)])
        rng = random.Random(None if plan.seed is None else plan.seed * 100003 + cid)
        seq = 0
        lat = tally.lat
        clock = time.perf_counter
        try:
            while True:
                if remaining[0] == 0 or loop.time() >= stop_at:
                    return
                if remaining[0] > 0:
                    remaining[0] -= 1
                op = only or rng.choices(ops, weights)[0]
                if plan.pump:
                    key = str(next(counter))
                elif plan.sequential:
                    key = key_name(next(counter))
                elif plan.keys:
                    key = key_name(rng.randrange(plan.keys))
                elif op == "set":
                    seq += 1
                    key = f"{plan.prefix}-{cid}-{seq}"
                else:  # unique keys: read one this client wrote, if any
                    key = f"{plan.prefix}-{cid}-{rng.randint(1, seq)}" if seq else key_name(0)
                k = quote(key, safe="")
                if op == "set":
                    path = f"/set?key={k}&value={k if plan.pump else value}"
                elif op == "get":
                    path = f"/get?key={k}"
                else:
                    path = f"/get?key={k}&stale=true"
                t0 = clock()
                try:
                    status = await http.get(path)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # transport errors are results too
                    tally.error(type(exc).__name__)
                    continue
                if 200 <= status < 300:
                    lat[op].append(clock() - t0)
                else:
                    tally.error(f"HTTP {status}")
        finally:
            http.close()

    async def reporter() -> None:
        while not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), 1.0)
            except TimeoutError:
                progress(tally.ok, tally.failed)

    rep = loop.create_task(reporter()) if progress else None
    try:
        await asyncio.gather(*(client(first_client + i) for i in range(count)))
    finally:
        tally.elapsed = loop.time() - start
        done.set()
        if rep is not None:
            await rep
        await close_all()
    return tally


def _new_loop_runner() -> asyncio.Runner:
    try:
        import uvloop
        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        return asyncio.Runner()


def _worker_main(conn, plan: Plan, first: int, count: int, budget: int | None) -> None:
    def progress(ok: int, errors: int) -> None:
        conn.send(("progress", ok, errors))
    try:
        with _new_loop_runner() as runner:
            tally = runner.run(run_clients(plan, first, count, progress, budget))
        conn.send(("done", {op: a.tobytes() for op, a in tally.lat.items()}, tally.errors, tally.elapsed))
    except BaseException as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


# ----------------------------------------------------------------- statistics

def percentile(sorted_values, p: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 if empty)."""
    n = len(sorted_values)
    if not n:
        return 0.0
    rank = max(1, math.ceil(p / 100.0 * n))
    return sorted_values[min(rank, n) - 1]


def _lat_summary(values) -> dict:
    v = sorted(values)
    ms = 1000.0
    return {
        "count": len(v),
        "p50": round(percentile(v, 50) * ms, 3),
        "p90": round(percentile(v, 90) * ms, 3),
        "p99": round(percentile(v, 99) * ms, 3),
        "max": round((v[-1] if v else 0.0) * ms, 3),
        "mean": round((sum(v) / len(v) if v else 0.0) * ms, 3),
    }


def summarize(plan: Plan, tally: Tally, wall: float, cpu: float, procs: int) -> dict:
    all_lat = array("d")
    for a in tally.lat.values():
        all_lat.extend(a)
    elapsed = tally.elapsed or wall
    return {
        "addrs": plan.addrs,
        "clients": plan.clients,
        "procs": procs,
        "http": plan.http,
        "mix": plan.mix,
        "keys": plan.keys,
        "value_size": plan.value_size,
        "duration_s": round(elapsed, 3),
        "ops": tally.ok,
        "errors": tally.failed,
        "error_kinds": dict(sorted(tally.errors.items())),
        "ops_per_s": round(tally.ok / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_ms": _lat_summary(all_lat),
        "by_op": {op: {"ops": len(a), "ops_per_s": round(len(a) / elapsed, 1) if elapsed > 0 else 0.0,
                       "latency_ms": _lat_summary(a)}
                  for op, a in tally.lat.items() if op in plan.mix},
        "client_cpu_s": round(cpu, 3),
        "client_cpu_percent": round(100.0 * cpu / wall, 1) if wall > 0 else 0.0,
    }


def format_report(r: dict) -> str:
    lat = r["latency_ms"]
    mix = ",".join(f"{k}={v:g}" for k, v in r["mix"].items())
    lines = [
        f"clients={r['clients']} procs={r['procs']} http={r['http']} mix={mix} keys={r['keys'] or 'unique'} "
        f"value={r['value_size']}B duration={r['duration_s']:.2f}s",
        f"ops={r['ops']} errors={r['errors']} ops/s={r['ops_per_s']:.1f}",
        f"latency ms: p50={lat['p50']:.2f} p90={lat['p90']:.2f} p99={lat['p99']:.2f} "
        f"max={lat['max']:.2f} mean={lat['mean']:.2f}",
    ]
    if len(r["by_op"]) > 1:
        for op, o in r["by_op"].items():
            ol = o["latency_ms"]
            lines.append(f"  {op:5s} ops={o['ops']} ops/s={o['ops_per_s']:.1f} p50={ol['p50']:.2f} "
                         f"p90={ol['p90']:.2f} p99={ol['p99']:.2f} max={ol['max']:.2f}")
    if r["error_kinds"]:
        lines.append("errors: " + " ".join(f"{k!r}={v}" for k, v in r["error_kinds"].items()))
    lines.append(f"client cpu: {r['client_cpu_s']:.2f}s ({r['client_cpu_percent']:.0f}% of one core)")
    return "\n".join(lines)


# -------------------------------------------------------------------- driver

def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def run(plan: Plan, procs: int = 1, progress_stream=None) -> dict:
    """Run the plan; returns the summary dict (see :func:`summarize`)."""
    procs = max(1, min(procs, plan.clients))
    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    last_line = [0.0]

    def show(ok: int, errors: int) -> None:
        if progress_stream is None:
            return
        t = time.perf_counter() - wall0
        rate = ok / t if t > 0 else 0.0
        progress_stream.write(f"\r[{t:6.1f}s] ops={ok} errors={errors} ops/s={rate:.0f}   ")
        progress_stream.flush()
        last_line[0] = t

    if procs == 1:
        with _new_loop_runner() as runner:
            tally = runner.run(run_clients(plan, 0, plan.clients, show if progress_stream else None,
                                           plan.requests))
    else:
        tally = _run_procs(plan, procs, show)
    wall = time.perf_counter() - wall0
    cpu = _cpu_seconds() - cpu0
    if progress_stream is not None and last_line[0]:
        progress_stream.write("\n")
        progress_stream.flush()
    return summarize(plan, tally, wall, cpu, procs)


def _run_procs(plan: Plan, procs: int, show) -> Tally:
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("fork")
    counts = _split(plan.clients, procs)
    budgets = _split(plan.requests, procs) if plan.requests is not None else [None] * procs
    workers, conns = [], []
    first = 0
    for count, budget in zip(counts, budgets):
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_worker_main, args=(child, plan, first, count, budget), daemon=True)
        p.start()
        child.close()
        workers.append(p)
        conns.append(parent)
        first += count
    seen = {id(c): (0, 0) for c in conns}
    total = Tally()
    failures: list[str] = []
    pending = list(conns)
    try:
        while pending:
            for c in wait(pending, timeout=2.0):
                try:
                    msg = c.recv()
                except EOFError:
                    failures.append("worker exited without a result")
                    pending.remove(c)
                    continue
                if msg[0] == "progress":
                    seen[id(c)] = (msg[1], msg[2])
                    show(sum(s[0] for s in seen.values()), sum(s[1] for s in seen.values()))
                elif msg[0] == "done":
                    for op, raw in msg[1].items():
                        a = array("d")
                        a.frombytes(raw)
                        total.lat[op].extend(a)
                    for kind, n in msg[2].items():
                        total.errors[kind] = total.errors.get(kind, 0) + n
                    total.elapsed = max(total.elapsed, msg[3])
                    pending.remove(c)
                else:
                    failures.append(msg[1])
                    pending.remove(c)
    finally:
        for p in workers:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
    if failures:
        raise RuntimeError("bench worker failed: " + "; ".join(failures))
    return total


def prefill(plan: Plan) -> dict:
    """Write every key of the key space once (untimed warm-up for reads)."""
    fill = Plan(addrs=plan.addrs, clients=min(plan.clients, plan.keys), duration=None,
                requests=plan.keys, keys=plan.keys, value_size=plan.value_size, mix={"set": 1.0},
                prefix=plan.prefix, timeout=plan.timeout, http=plan.http, sequential=True,
                cacert=plan.cacert)
    with _new_loop_runner() as runner:
        tally = runner.run(run_clients(fill, 0, fill.clients, None, fill.requests))
    return {"ops": tally.ok, "errors": tally.failed, "error_kinds": tally.errors}


# ------------------------------------------------------------------------ CLI

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--addr", default=os.environ.get("RAFTKV_ADDR", "http://127.0.0.1:8000"),
                   help="HTTP address of a node; a comma-separated list spreads clients over nodes "
                        "(default http://127.0.0.1:8000, env RAFTKV_ADDR)")
    p.add_argument("--cacert", default=None, metavar="FILE",
                   help="CA certificate (PEM) of a TLS cluster: host:port addresses mean https, "
                        "verified against it (env RAFTKV_CACERT)")
    p.add_argument("-c", "--clients", type=int, default=1, help="concurrent closed-loop clients (default 1)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-d", "--duration", type=float, default=None, help="seconds to run (default 10)")
    g.add_argument("-n", "--requests", type=int, default=None, help="operations to run in all")
    p.add_argument("-k", "--keys", type=int, default=0,
                   help="key space size; 0 (default) writes unique keys")
    p.add_argument("-s", "--value-size", type=int, default=64, help="value size in bytes (default 64)")
    p.add_argument("--mix", default="set=1",
                   help="weighted operations: set (write), get (linearizable read), stale (local read); "
                        "e.g. set=70,get=20,stale=10 (default set=1)")
    p.add_argument("--prefill", action="store_true",
                   help="first write every key of --keys once (untimed), so reads find values")
    p.add_argument("--procs", type=int, default=1,
                   help="worker processes to spread the clients over (default 1)")
    p.add_argument("--prefix", default="bench", help="key prefix (default bench)")
    p.add_argument("--pump", action="store_true",
                   help="write keys 1, 2, ... N (-n) in order, each once, with the key as value "
                        "(what scripts/pump.sh does)")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds (default 30)")
    p.add_argument("--seed", type=int, default=None, help="seed for key and operation choice")
    p.add_argument("--http", choices=("raw", "aiohttp"), default="raw",
                   help="client: raw (a lean keep-alive HTTP/1.1 connection per client, default) "
                        "or aiohttp (one shared ClientSession)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")


def main(args: argparse.Namespace) -> int:
    try:
        mix = parse_mix(args.mix)
    except ValueError as exc:
        print(f"raftkv bench: {exc}", file=sys.stderr)
        return 2
    problems = []
    if args.clients < 1:
        problems.append("--clients must be at least 1")
    if args.duration is not None and not args.duration > 0:
        problems.append("--duration must be positive")
    if args.requests is not None and args.requests < 1:
        problems.append("--requests must be at least 1")
    if args.keys < 0 or args.value_size < 0 or args.procs < 1:
        problems.append("--keys and --value-size must be >= 0, --procs >= 1")
    if args.prefill and not args.keys:
        problems.append("--prefill needs --keys")
    if args.pump and (args.requests is None or args.keys or mix != {"set": 1.0}):
        problems.append("--pump needs -n and no --keys or --mix")
    if problems:
        print("raftkv bench: " + "; ".join(problems), file=sys.stderr)
        return 2
    addrs = [a for a in args.addr.split(",") if a.strip()]
    duration = None if args.requests is not None else (args.duration or 10.0)
    plan = Plan(addrs=addrs, clients=args.clients, duration=duration, requests=args.requests,
                keys=args.keys, value_size=args.value_size, mix=mix, prefix=args.prefix,
                timeout=args.timeout, seed=args.seed, http=args.http, pump=args.pump,
                cacert=getattr(args, "cacert", None) or os.environ.get("RAFTKV_CACERT") or None)
    progress = None if args.quiet else sys.stderr
    try:
        if args.prefill:
            if progress:
                print(f"prefilling {args.keys} keys ...", file=sys.stderr)
            pre = prefill(plan)
            if pre["errors"]:
                print(f"raftkv bench: prefill had {pre['errors']} errors: {pre['error_kinds']}",
                      file=sys.stderr)
        result = run(plan, args.procs, progress)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        print(f"raftkv bench: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_report(result))
    return 0 if result["ops"] else 1
