"""Several losses in one request against each loss alone, on the benchmark's segmentation batch.

    .venv/bin/python bench/several.py [--quick] [--rounds 15]

One request with ``losses`` {focal, dice (softmax, index targets), cross_entropy} on 8x10x128x128
float32 logits and their class indices, as .npy files, against the same request for each of the
three alone: values only (what an evaluation back-end asks; the goal: the three-loss request's
median latency at most 1.5x the slowest loss's alone), and with the input's gradient (reported:
each loss has a gradient of its own, so the backward passes add up). The four requests are sent
one after another in each round (the order rotating), so a slow spell of this shared machine hits
them alike.

bench/run.py runs it on its own server and adds the rows and the goal to its table; run alone,
this starts a server, prints the figures and writes bench/results/several-latest.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bodies
from procs import HOST, ROOT, Server, free_port, machine

SHAPE, QUICK_SHAPE = (8, 10, 128, 128), (2, 10, 64, 64)
SINGLE = {
    "focal": {"name": "focal"},
    "dice": {"name": "dice", "params": {"softmax": True}},
    "cross_entropy": "cross_entropy",
}
THREE = "3 losses"
GOAL = 1.5


def bodies_for(quick: bool, grad: bool) -> dict[str, bodies.Body]:
    """The three-loss body and one body per loss, on the same seeded tensors."""
    out = {}
    for name, spec in SINGLE.items():
        t = bodies.make(QUICK_SHAPE if quick else SHAPE, spec, {name}, seed=2)
        out[name] = bodies.multipart(t, grad)
    t = bodies.make(QUICK_SHAPE if quick else SHAPE, "focal", {"focal"}, seed=2)
    t.loss = {"losses": SINGLE}
    out[THREE] = bodies.multipart(t, grad)
    return out


def measure(url: str, rounds: int, quick: bool, grad: bool) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Each body's latencies (ms), the four sent in turn each round after one warm-up each, and
    each body's size."""
    made = bodies_for(quick, grad)
    times: dict[str, list[float]] = {k: [] for k in made}
    names = list(made)
    with httpx.Client(base_url=url, timeout=120) as client:
        for k in range(rounds + 1):
            for name in names[k % len(names) :] + names[: k % len(names)]:
                body = made[name]
                start = time.perf_counter()
                r = client.post("/v1/evaluate", content=body.content, headers={"content-type": body.content_type})
                elapsed = (time.perf_counter() - start) * 1000
                if r.status_code != 200:
                    raise RuntimeError(f"{name}: {r.status_code} {r.text[:300]}")
                if k:  # round 0 warms each up
                    times[name].append(elapsed)
    return times, {k: b.nbytes for k, b in made.items()}


def rows_and_goal(times: dict[str, list[float]], sizes: dict[str, int], grad: bool) -> tuple[list[dict], dict]:
    what = "npy +grad" if grad else "npy"
    p50 = {k: statistics.median(v) for k, v in times.items()}
    rows = [
        {"scenario": f"segmentation {k} {what}" + ("" if k == THREE else " (alone)"), "server": "ours",
         "concurrency": 1, "p50_ms": p50[k], "p99_ms": max(times[k]), "req_s": 1000 / p50[k], "errors": 0,
         "requests": len(times[k]), "body_bytes": sizes[k], "mb_s": sizes[k] / p50[k] / 1e3}
        for k in times
    ]  # fmt: skip
    slowest = max(SINGLE, key=lambda k: p50[k])
    ratio = p50[THREE] / p50[slowest]
    how = (
        f"{THREE} p50 {p50[THREE]:.1f} ms; alone: "
        + ", ".join(f"{k} {p50[k]:.1f} ms" for k in SINGLE)
        + f"; {len(times[THREE])} interleaved rounds"
    )
    goal = {
        "goal": f"segmentation {what}: {THREE} in one request / the slowest alone, p50",
        "ratio": ratio,
        "target": f"<= {GOAL:g}" if not grad else "none (reported)",
        "met": ratio <= GOAL if not grad else None,
        "how": how,
    }
    return rows, goal


def run(url: str, quick: bool, rounds: int) -> tuple[list[dict], list[dict]]:
    """Values only (what an evaluation back-end asks: the goal) and with gradients (three backward
    passes, one per loss: reported)."""
    rows, goals = [], []
    for grad in (False, True):
        r, g = rows_and_goal(*measure(url, rounds, quick, grad), grad)
        rows += r
        goals.append(g)
    return rows, goals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small batch and 3 rounds")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="loss-bench-several-"))
    server = Server("ours", [sys.executable, "-m", "service", "--host", HOST, "--port", str(free_port())], {},
                    "/readyz", log_dir)  # fmt: skip
    server.start()
    try:
        rows, goals = run(server.url(""), args.quick, 3 if args.quick else args.rounds)
    finally:
        server.stop()
    m = machine()
    lines = [
        "# Several losses in one request (bench/several.py)" + (" --quick" if args.quick else ""),
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM; torch {m['torch']}; "
        f"commit {m['git_commit'] or 'n/a'}; {m['date']}",
        "",
        "| request | p50 ms | requests |",
        "| --- | ---: | ---: |",
        *(f"| {r['scenario']} | {r['p50_ms']:.1f} | {r['requests']} |" for r in rows),
        "",
        *(f"- **{g['goal']}: {g['ratio']:.2f}** (goal {g['target']}"
          + ("" if g["met"] is None else f", {'met' if g['met'] else 'NOT met'}") + f"); {g['how']}" for g in goals),
    ]  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / ("several-quick.md" if args.quick else "several-latest.md")).write_text(text)


if __name__ == "__main__":
    main()
