"""Benchmark loss-service against its floors and the naive service; writes a results table.

    .venv/bin/python bench/run.py [--quick] [--out bench/results] [--only REGEX] [--servers NAMES]

Servers run one at a time as subprocesses (started the README's way); each runs its scenarios at
fixed concurrency with bench/load.py while bench/procs.py watches its memory. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bodies
import floors
import report
import several
from load import Body, run_point
from procs import HOST, ROOT, RssWatch, Server, cpu_seconds, free_port, machine, machine_ticks

PY = sys.executable
OURS, BATCH1, WORKERS2, NAIVE, TRIVIAL = "ours", "ours-batch1", "ours-2workers", "naive", "trivial"
FRESH = "ours-fresh"  # memory rows: a freshly started server serving only that scenario
FLOOR = "floor"  # the in-process floor's rows
ALTERNATING_ROUNDS = 11  # small c=64, ours and naive in turn (see run_alternating)
V2_ROUNDS = 7  # small c=64, v1 and v2 JSON in turn on ours (see run_v2_rounds)
ALTERNATING, SEVERAL = "alternating", "several"  # phases beside the servers' own rows
EXTRA = (ALTERNATING, SEVERAL)
PHASES = (OURS, BATCH1, WORKERS2, NAIVE, TRIVIAL, FRESH, *EXTRA)  # what --servers chooses from


def ours(name: str, env: dict[str, str], log_dir: Path) -> Server:
    return Server(name, [PY, "-m", "service", "--host", HOST, "--port", str(free_port())], env, "/readyz", log_dir)


def servers(log_dir: Path) -> list[Server]:
    """Ours first (its catalog decides the bodies), then the others, each on a free port."""
    cores = os.cpu_count() or 1
    return [
        ours(OURS, {}, log_dir),
        ours(BATCH1, {"LOSS_SERVICE_ENGINE__MAX_BATCH_REQUESTS": "1"}, log_dir),
        ours(
            WORKERS2,
            {"LOSS_SERVICE_WORKERS": "2", "LOSS_SERVICE_ENGINE__TORCH_THREADS": str(max(1, cores // 2))},
            log_dir,
        ),
        Server(
            NAIVE,
            [
                PY,
                "-m",
                "uvicorn",
                "--app-dir",
                "../shared/bench",
                "naive_service:app",
                "--host",
                HOST,
                "--port",
                str(free_port()),
                "--no-access-log",
            ],
            {},
            "/openapi.json",
            log_dir,
        ),
        Server(
            TRIVIAL, [PY, "bench/trivial_app.py", "--host", HOST, "--port", str(free_port())], {}, "/healthz", log_dir
        ),
    ]


@dataclass
class Scenario:
    key: str
    tensors: bodies.Tensors
    encoding: str  # "nested", "base64" or "npy"
    grad: bool
    ours: Body
    naive: Body | None
    levels: dict[str, tuple[int, ...]]  # server -> concurrency levels it runs
    budget: dict = field(default_factory=dict)  # run_point keyword arguments
    naive_budget: dict = field(default_factory=dict)


def scenarios(available: set[str], quick: bool) -> list[Scenario]:
    every = (OURS, BATCH1, WORKERS2, TRIVIAL)
    out = []
    # 1. small: cross_entropy N=8, C=10, nested JSON
    t = bodies.make((8, 10), "cross_entropy", available)
    small_levels = (1, 8) if quick else (1, 8, 64)
    small = dict(duration_s=0.3 if quick else 4.0, warmup_s=0.2 if quick else 1.0, warmup_requests=200)
    out.append(Scenario("small", t, "nested", False, bodies.nested_json(t, False), bodies.naive(t, False),
                        dict.fromkeys((*every, NAIVE), small_levels), small, small))  # fmt: skip
    # 1b. the same as the Open Inference Protocol's JSON (tritonclient's binary_data=False), right after v1's
    out.append(Scenario("small v2 json", t, "v2 json", False, bodies.v2_json(t), None, {OURS: small_levels[-1:]},
                        small))  # fmt: skip
    # 2. large: cross_entropy N=65536, C=100 float32; three encodings, value and gradient
    t = bodies.make((2048 if quick else 65536, 100), "cross_entropy", available, seed=1)
    reps = 1 if quick else 20
    large = dict(duration_s=8.0, max_requests=reps, warmup_requests=1)
    for encoding, make in (("npy", bodies.multipart), ("base64", bodies.base64_json), ("nested", bodies.nested_json)):
        for grad in (False, True):
            levels = dict.fromkeys(every, (1,))
            if encoding == "npy" and not grad and not quick:
                levels[OURS] = levels[WORKERS2] = (1, 8)  # memory under the in-flight budget; workers
            budget = large if encoding != "nested" else dict(large, max_requests=1 if quick else 5)
            naive = None
            if encoding == "nested":
                naive, levels[NAIVE] = bodies.naive(t, grad), (1,)
                levels.pop(BATCH1), levels.pop(WORKERS2)  # one request at a time: batching plays no part
            key = f"large {encoding}" + (" +grad" if grad else "")
            naive_budget = dict(duration_s=1.0 if quick else 15.0, max_requests=1 if quick else 3, warmup_requests=0)
            out.append(Scenario(key, t, encoding, grad, make(t, grad), naive, levels, budget, naive_budget))
        if encoding == "npy":  # 2b. the Open Inference Protocol's binary tensors, right after v1's .npy
            for grad in (False, True):
                key = "large v2 binary" + (" +grad" if grad else "")
                out.append(Scenario(key, t, "v2 binary", grad, bodies.v2_binary(t, grad), None, {OURS: (1,)}, large))
    # 3. segmentation: focal on 8x10x128x128 logits, .npy, with the gradient
    t = bodies.make((2, 10, 64, 64) if quick else (8, 10, 128, 128), {"name": "focal"}, available, seed=2)
    levels = dict.fromkeys(every, (1,) if quick else (1, 8))
    levels[TRIVIAL] = (1,)
    budget = dict(duration_s=0.5 if quick else 5.0, max_requests=2 if quick else 60, warmup_requests=1)
    out.append(Scenario("segmentation npy +grad", t, "npy", True, bodies.multipart(t, True), None, levels, budget))
    return out


def _row(sc: Scenario, server: str, point: dict, rss: RssWatch) -> dict:
    row = {"scenario": sc.key, "server": server, **point, "idle_mb": rss.idle_mb, "peak_mb": rss.peak_mb,
           "tensor_mb": sc.tensors.nbytes / 1e6}  # fmt: skip
    cpu = point.get("cpu_us_per_req")
    print(
        f"  {sc.key:24} {server:14} c={point['concurrency']:<3} {point['req_s']:9.1f} req/s"
        f"  p50 {point['p50_ms']:9.1f} ms  peak {rss.peak_mb:7.0f} MB"
        + (f"  cpu {cpu:9.0f} us/req" if cpu is not None else "")
        + f"  errors {point['errors']} {point['first_error'][:120]}",
        flush=True,
    )
    return row


def run_memory(plan: list[Scenario], rows: list[dict], log_dir: Path, quick: bool) -> None:
    """Peak RSS of one large request (and of large npy at concurrency 8) on a fresh server each:
    idle is measured after one small warm-up request, so nothing earlier inflates either figure."""
    for sc in plan:
        if not sc.key.startswith("large") or (quick and sc.key != "large npy"):
            continue
        for c in (1, 8) if sc.key == "large npy" and not quick else (1,):
            server = ours(FRESH, {}, log_dir)
            try:
                server.start()
                asyncio.run(run_point(HOST, server.port, plan[0].ours, 1, duration_s=0.3, warmup_requests=0))
                with RssWatch(server.proc.pid) as rss:
                    point = asyncio.run(run_point(HOST, server.port, sc.ours, c, duration_s=30.0, max_requests=c,
                                                  warmup_requests=0))  # fmt: skip
                rows.append(_row(sc, FRESH, point, rss))
            finally:
                server.stop()


def run_server(server: Server, plan: list[Scenario], rows: list[dict]) -> None:
    for sc in plan:
        body = sc.naive if server.name == NAIVE else sc.ours
        if body is None or server.name not in sc.levels:
            continue
        budget = sc.naive_budget if server.name == NAIVE else sc.budget
        for c in sc.levels[server.name]:
            if c > 1 and "max_requests" in budget:  # a few rounds of c requests
                budget = dict(budget, max_requests=max(budget["max_requests"], 3 * c))
            pid = server.proc.pid
            with RssWatch(pid) as rss:
                point = asyncio.run(run_point(HOST, server.port, body, c, **budget, cpu=partial(cpu_seconds, pid),
                                              ticks=machine_ticks))  # fmt: skip
            rows.append(_row(sc, server.name, point, rss))


def workers_fallback(failed: Server, plan: list[Scenario], rows: list[dict], info: dict) -> None:
    """`python -m service` could not start 2 workers: measure them with uvicorn's own CLI instead,
    same app factory and settings, so the scaling goal still gets a figure (flagged as such)."""
    argv = [PY, "-m", "uvicorn", "service.app:create_app_from_env", "--factory", "--workers", "2", "--host", HOST,
            "--port", str(free_port()), "--no-access-log", "--timeout-keep-alive", "5"]  # fmt: skip
    server = Server(WORKERS2, argv, {k: v for k, v in failed.env.items() if k.startswith("LOSS_SERVICE_")}, "/readyz",
                    failed.log_path.parent)  # fmt: skip
    note = f"{WORKERS2} rows come from `{' '.join(argv[1:])}`, because `python -m service` failed with 2 workers"
    print(f"  {note}", flush=True)
    try:
        server.start()
        info.setdefault("notes", []).append(note)
        run_server(server, plan, rows)
    except Exception as exc:
        print(f"  {WORKERS2} (uvicorn CLI) failed too: {exc}", flush=True)
        info["failures"].append(f"{WORKERS2} (uvicorn CLI): {exc}")
    finally:
        server.stop()


def run_alternating(plan: list[Scenario], log_dir: Path, quick: bool) -> list[dict]:
    """The small scenario at concurrency 64 on ours and on the naive service in turn, for many
    short rounds, both servers up and the idle one waiting: on a shared box a slow spell then hits
    both, where the main table measures them minutes apart. This box's speed moves within seconds
    (identical servers measured up to 1.5x apart a minute later), so each pair is seconds apart,
    and which server goes first alternates from round to round. The small goal uses the median."""
    sc = plan[0]
    pair = [s for s in servers(log_dir) if s.name in (OURS, NAIVE)]
    rounds: list[dict] = []
    try:
        for s in pair:
            s.log_path = log_dir / f"{s.name}-alternating.log"
            s.start()
        budget = dict(duration_s=0.3 if quick else 2.0, warmup_s=0.2 if quick else 0.5, warmup_requests=200)
        for k in range(1 if quick else ALTERNATING_ROUNDS):
            got = {}
            for s in pair if k % 2 == 0 else pair[::-1]:
                pid = s.proc.pid
                point = asyncio.run(run_point(HOST, s.port, sc.naive if s.name == NAIVE else sc.ours, 64, **budget,
                                              cpu=partial(cpu_seconds, pid), ticks=machine_ticks))  # fmt: skip
                got[s.name] = point["req_s"]
                got[f"{s.name}_errors"] = point["errors"]
                got[f"{s.name}_cpu_us"] = point["cpu_us_per_req"]
                got[f"{s.name}_steal"] = point["steal"]
            rounds.append(got)
            said = [f"{s.name} {got[s.name]:.0f} req/s ({report.or_na(got[f'{s.name}_cpu_us'], '.0f')} us CPU/req, "
                    f"steal {report.or_na(got[f'{s.name}_steal'], '.0%')})" for s in pair]  # fmt: skip
            ratio = got[OURS] / got[NAIVE] if got[NAIVE] else None
            print(f"  round {k + 1}: {', '.join(said)}, ratio {report.or_na(ratio, '.2f')}", flush=True)
    finally:
        for s in pair:
            s.stop()
    return rounds


def run_v2_rounds(server: Server, plan: list[Scenario], quick: bool) -> list[dict]:
    """The small request at c=64 as v1 and as v2 JSON in turn on the same server, for short rounds
    (which goes first alternates), as run_alternating does for ours and naive: the v2 goal takes
    their median, steadier on a shared box than two points measured one after the other."""
    by_key = {sc.key: sc for sc in plan}
    if "small" not in by_key or "small v2 json" not in by_key:
        return []
    c = by_key["small v2 json"].levels[OURS][-1]
    budget = dict(duration_s=0.3 if quick else 2.0, warmup_s=0.2 if quick else 0.5, warmup_requests=200)
    rounds = []
    for k in range(1 if quick else V2_ROUNDS):
        got: dict = {"concurrency": c}
        for key in ("small", "small v2 json")[:: 1 if k % 2 == 0 else -1]:
            point = asyncio.run(run_point(HOST, server.port, by_key[key].ours, c, **budget,
                                          cpu=partial(cpu_seconds, server.proc.pid)))  # fmt: skip
            got[key] = point["req_s"]
            got[f"{key} cpu_us"], got[f"{key} errors"] = point["cpu_us_per_req"], point["errors"]
        rounds.append(got)
        ratio = got["small v2 json"] / got["small"] if got["small"] else None
        print(f"  v2 round {k + 1} c={c}: v1 {got['small']:.0f} req/s, v2 JSON {got['small v2 json']:.0f} req/s, "
              f"ratio {report.or_na(ratio, '.2f')}", flush=True)  # fmt: skip
    return rounds


def run_floors(plan: list[Scenario], rows: list[dict], quick: bool) -> None:
    torch.set_num_threads(os.cpu_count() or 1)  # the service's default: cores / workers
    for sc in plan:
        fn = floors.make(sc.tensors, sc.encoding, sc.grad, sc.ours)
        m = floors.measure(fn, max_s=0.2 if quick else 3.0, max_reps=2000 if sc.key == "small" else 10)
        rows.append({"scenario": sc.key, "server": FLOOR, "concurrency": 1, **m, "errors": 0,
                     "body_bytes": sc.ours.nbytes, "mb_s": m["req_s"] * sc.ours.nbytes / 1e6,
                     "tensor_mb": sc.tensors.nbytes / 1e6})  # fmt: skip
        print(f"  {sc.key:24} {FLOOR:14} c=1   {m['req_s']:9.1f} req/s  p50 {m['p50_ms']:9.2f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny subset (< 1 min) for smoke testing")
    parser.add_argument("--out", help="where latest.md/.json go (default bench/results; bench/results/selected "
                        "with --only or --servers)")  # fmt: skip
    parser.add_argument("--only", metavar="REGEX", help="only the scenarios whose name matches, e.g. 'small|v2'")
    parser.add_argument("--servers", metavar="NAMES", help=f"comma-separated: only these servers and phases "
                        f"({', '.join(PHASES)}); with --only or --servers, a phase runs only when named")  # fmt: skip
    args = parser.parse_args()
    selected = args.only is not None or args.servers is not None
    chosen = set(args.servers.split(",")) if args.servers else set(PHASES) - ({FRESH, *EXTRA} if selected else set())
    if args.out is None:
        args.out = str(ROOT / "bench" / "results" / ("selected" if selected else ""))
    started = time.monotonic()
    info = {"machine": machine(), "quick": args.quick}
    rows: list[dict] = []
    plan: list[Scenario] = []
    log_dir = Path(tempfile.mkdtemp(prefix="loss-bench-"))
    print(f"server logs in {log_dir}", flush=True)
    for server in servers(log_dir):
        if server.name not in chosen:
            continue
        print(f"{server.name}: {' '.join(server.argv[1:])}", flush=True)
        try:
            server.start()
            if server.name == OURS:
                catalog = httpx.get(server.url("/v1/losses"), timeout=10).json()["losses"]
                info["service"] = httpx.get(server.url("/v1/info"), timeout=10).json()
                plan = scenarios({entry["name"] for entry in catalog}, args.quick)
                plan = [sc for sc in plan if args.only is None or re.search(args.only, sc.key)]
                info["stand_ins"] = sorted({sc.tensors.stand_in for sc in plan if sc.tensors.stand_in})
                run_floors(plan, rows, args.quick)
            run_server(server, plan, rows)
            if server.name == OURS:  # the v2 JSON goal's rounds, v1 and v2 in turn
                info["v2_rounds"] = run_v2_rounds(server, plan, args.quick)
            if server.name == OURS and SEVERAL in chosen:  # several losses in one request (bench/several.py)
                several_rows, info["several"] = several.run(server.url(""), args.quick, 3 if args.quick else 15)
                rows += several_rows
        except Exception as exc:
            print(f"  {server.name} failed: {exc}", flush=True)
            info.setdefault("failures", []).append(f"{server.name}: {exc}")
            if server.name == WORKERS2 and plan:
                workers_fallback(server, plan, rows, info)
        finally:
            server.stop()
    if plan and FRESH in chosen:
        print(f"{FRESH}: one fresh server per memory point", flush=True)
        try:
            run_memory(plan, rows, log_dir, args.quick)
        except Exception as exc:
            print(f"  memory points failed: {exc}", flush=True)
            info.setdefault("failures", []).append(f"{FRESH}: {exc}")
    if plan and ALTERNATING in chosen and plan[0].key == "small":
        print("small c=64, ours and naive in turn", flush=True)
        try:
            info["alternating"] = run_alternating(plan, log_dir, args.quick)
        except Exception as exc:
            print(f"  alternating rounds failed: {exc}", flush=True)
            info.setdefault("failures", []).append(f"alternating: {exc}")
    info["machine"]["load_avg_at_end"] = os.getloadavg()
    info["duration_s"] = round(time.monotonic() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    goals = report.goals(rows, info) + info.get("several", [])
    (out / "latest.json").write_text(json.dumps({**info, "rows": rows, "goals": goals}, indent=1, default=str))
    (out / "latest.md").write_text(report.markdown(rows, goals, info))
    print(f"wrote {out / 'latest.md'} and {out / 'latest.json'} in {info['duration_s']} s")


if __name__ == "__main__":
    main()
