"""The results: goals as ratios, and the markdown table."""

from __future__ import annotations

import math
import statistics

MiB = 1024 * 1024


def _get(rows: list[dict], scenario: str, server: str, c: int = 1) -> dict | None:
    for r in rows:
        if (
            r["scenario"] == scenario
            and r["server"] == server
            and r["concurrency"] == c
            and r["requests"] > r["errors"]
        ):
            return r
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def _field(row: dict | None, key: str) -> float | None:
    return None if row is None else row.get(key)


def goals(rows: list[dict], info: dict) -> list[dict]:
    """Each goal: what is compared, the ratio, the target and whether it is met (None: not measured)."""
    g = lambda s, sv, c=1: _get(rows, s, sv, c)  # noqa: E731
    out = []

    def goal(name: str, ratio: float | None, op: str, target: float, how: str) -> None:
        met = None if ratio is None else (ratio >= target if op == ">=" else ratio <= target)
        out.append({"goal": name, "ratio": ratio, "target": f"{op} {target:g}", "met": met, "how": how})

    rps = lambda row: _field(row, "req_s")  # noqa: E731
    p50 = lambda row: _field(row, "p50_ms")  # noqa: E731
    rounds = [r for r in info.get("alternating", []) if not r.get("ours_errors") and not r.get("naive_errors")]
    ratios = sorted(r["ours"] / r["naive"] for r in rounds if r.get("naive"))
    cpu = sorted(r["naive_cpu_us"] / r["ours_cpu_us"] for r in rounds if r.get("naive_cpu_us") and r.get("ours_cpu_us"))
    steal = [r[k] for r in rounds for k in ("ours_steal", "naive_steal") if r.get(k) is not None]
    how = "aim 2; rounds " + ", ".join(f"{x:.2f}" for x in ratios)
    if cpu:
        how += f"; server CPU per request, naive / ours: median {statistics.median(cpu):.2f} (rounds "
        how += ", ".join(f"{x:.2f}" for x in cpu) + ")"
    if steal:
        how += f"; CPU stolen by the hypervisor: {min(steal):.0%} to {max(steal):.0%} of the box"
    median = statistics.median(ratios) if ratios else None
    goal(f"small c=64: ours / naive req/s, median of {len(ratios)} alternating rounds", median, ">=", 1.5, how)
    table = _ratio(rps(g("small", "ours", 64)), rps(g("small", "naive", 64)))
    goal("small c=64: ours / naive req/s, the table's points", table, ">=", 1.5, "measured minutes apart")
    for c in (8, 64):
        on_off = _ratio(rps(g("small", "ours", c)), rps(g("small", "ours-batch1", c)))
        goal(f"small c={c}: batching on / off req/s", on_off, ">=", 1.0, "batching must win")
    # No goal for segmentation batching on / off: each of its requests (1.3M elements) is over
    # solo_elements, so both servers run them alone; its "x batch-off" column shows the ratio.
    for s, c in (("small", 64), ("large npy", 8), ("segmentation npy +grad", 8)):
        scaling = _ratio(rps(g(s, "ours-2workers", c)), rps(g(s, "ours", c)))
        how = "scales, not collapses (< 1 on 2 cores shared with the client)"
        goal(f"{s} c={c}: 2 workers / 1 worker req/s", scaling, ">=", 1.0, how)
    goal(
        "large npy: ours p50 / in-process floor",
        _ratio(p50(g("large npy", "ours")), p50(g("large npy", "floor"))),
        "<=",
        3,
        "",
    )
    goal(
        "large npy +grad: ours p50 / in-process floor",
        _ratio(p50(g("large npy +grad", "ours")), p50(g("large npy +grad", "floor"))),
        "<=",
        6,
        "",
    )
    goal(
        "large +grad: naive (nested JSON) p50 / ours (npy) p50",
        _ratio(p50(g("large nested +grad", "naive")), p50(g("large npy +grad", "ours"))),
        ">=",
        100,
        "",
    )
    goal(
        "large nested: naive p50 / ours p50",
        _ratio(p50(g("large nested", "naive")), p50(g("large nested", "ours"))),
        ">=",
        2.5,
        "",
    )
    goal(
        "large nested +grad: naive p50 / ours p50",
        _ratio(p50(g("large nested +grad", "naive")), p50(g("large nested +grad", "ours"))),
        ">=",
        10,
        "",
    )
    v2_rounds = [r for r in info.get("v2_rounds", []) if not r["small errors"] and not r["small v2 json errors"]]
    v2_ratios = sorted(r["small v2 json"] / r["small"] for r in v2_rounds if r["small"])
    how = "rounds " + ", ".join(f"{x:.2f}" for x in v2_ratios)
    cpu_v2 = [r["small v2 json cpu_us"] / r["small cpu_us"] for r in v2_rounds if r["small cpu_us"]]
    if cpu_v2:
        how += f"; server CPU per request, v2 / v1: median {statistics.median(cpu_v2):.2f}"
    v2_median = statistics.median(v2_ratios) if v2_ratios else None
    c = v2_rounds[0]["concurrency"] if v2_rounds else 64
    goal(f"small c={c}: v2 JSON / v1 req/s, median of {len(v2_ratios)} alternating rounds", v2_median, ">=", 0.9, how)
    v2_small = _ratio(rps(g("small v2 json", "ours", 64)), rps(g("small", "ours", 64)))
    goal("small c=64: v2 JSON / v1 req/s, the table's points", v2_small, ">=", 0.9, "measured one after the other")
    grad = _ratio(p50(g("large v2 binary +grad", "ours")), p50(g("large npy +grad", "ours")))
    how = f"with the gradient (binary against base64 .npy): {_fmt(grad, 2)}x"
    goal("large: v2 binary p50 / v1 .npy multipart p50", _ratio(p50(g("large v2 binary", "ours")),
         p50(g("large npy", "ours"))), "<=", 1.1, how)  # fmt: skip
    goal("large v2 binary: ours p50 / in-process floor", _ratio(p50(g("large v2 binary", "ours")),
         p50(g("large v2 binary", "floor"))), "<=", 2, "")  # fmt: skip
    for s in (
        "large npy",
        "large npy +grad",
        "large base64",
        "large base64 +grad",
        "large nested",
        "large nested +grad",
    ):
        row = g(s, "ours-fresh")
        above = None if row is None else (row["peak_mb"] - row["idle_mb"]) * MiB / 1e6
        goal(f"{s} c=1: peak RSS above idle / tensor bytes", _ratio(above, _field(row, "tensor_mb")), "<=", 10, "")
    budget = info.get("service", {}).get("batching", {}).get("inflight_bytes")
    row = g("large npy", "ours-fresh", 8)
    above = None if row is None else (row["peak_mb"] - row["idle_mb"]) * MiB
    goal("large npy c=8: peak RSS above idle / in-flight budget", _ratio(above, budget), "<=", 1, f"budget {budget} B")
    return out


def _fmt(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}" if abs(x) >= 1 or x == 0 else f"{x:.3g}"


def or_na(x: float | None, spec: str) -> str:
    """``x`` formatted with ``spec``, or "n/a" when it was not measured."""
    return "n/a" if x is None else format(x, spec)


def markdown(rows: list[dict], goal_rows: list[dict], info: dict) -> str:
    m = info["machine"]
    lines = [
        "# loss-service benchmark" + (" (--quick: sizes and durations cut down)" if info.get("quick") else ""),
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM, Linux {m['kernel']}",
        f"- python {m['python']}, torch {m['torch']}, numpy {m['numpy']}; "
        f"commit {m['git_commit'] or 'n/a'}; {m['date']}",
        f"- load average at start {tuple(round(x, 2) for x in m['load_avg_at_start'])}, at end "
        f"{tuple(round(x, 2) for x in m.get('load_avg_at_end', ()))}; run took {info.get('duration_s')} s",
        "- servers: ours = `python -m service` defaults; ours-batch1 = max batch 1; ours-2workers = 2 uvicorn "
        "workers x torch threads cores/2; naive = ../shared/bench/naive_service.py; trivial = bench/trivial_app.py "
        "(HTTP floor); floor = the same work in-process (bench/floors.py); ours-fresh = a freshly started `ours` "
        "per row, warmed by one small request, for memory (its latency is a cold request's)",
    ]
    for note in info.get("stand_ins", []):
        lines.append(f"- **stand-in**: {note} (not in the service's catalog at run time)")
    for note in info.get("notes", []):
        lines.append(f"- **note**: {note}")
    for failure in info.get("failures", []):
        first, _, rest = failure.partition("\n")
        lines.append(f"- **failure**: {first}" + (f" ... `{rest.strip().splitlines()[-1]}`" if rest.strip() else ""))
    lines += ["", "## Goals", "", "| goal | ratio | target | met | note |", "| --- | ---: | --- | --- | --- |"]
    for gl in goal_rows:
        met = {True: "yes", False: "**no**", None: "n/a"}[gl["met"]]
        lines.append(f"| {gl['goal']} | {_fmt(gl['ratio'], 2)} | {gl['target']} | {met} | {gl['how']} |")
    lines += [
        "",
        "## Measurements",
        "",
        "x naive and x batch-off: req/s over theirs at the same concurrency; "
        "x floor: p50 over the in-process floor's. "
        "CPU us/req: the server's CPU time (all processes and threads) over the measured phase, per request; "
        "steal: the share of the box's time the hypervisor gave to other guests meanwhile.",
        "",
        "| scenario | server | conc | req/s | p50 ms | p99 ms | MB/s | body MB | idle RSS MB | peak RSS MB "
        "| CPU us/req | steal | n (err) | x naive | x floor | x batch-off |",
        "| --- | --- |" + " ---: |" * 14,
    ]
    for r in rows:
        s, c = r["scenario"], r["concurrency"]
        naive, floor, off = _get(rows, s, "naive", c), _get(rows, s, "floor"), _get(rows, s, "ours-batch1", c)
        ours = r["server"].startswith("ours")
        vs_naive = _ratio(r["req_s"], _field(naive, "req_s")) if ours else None
        vs_floor = _ratio(r["p50_ms"], _field(floor, "p50_ms")) if r["server"] != "floor" and c == 1 else None
        vs_off = _ratio(r["req_s"], _field(off, "req_s")) if r["server"] in ("ours", "ours-2workers") else None
        err = f"{r['requests']} ({r['errors']})" if r["errors"] else str(r["requests"])
        lines.append(
            f"| {s} | {r['server']} | {c} | {_fmt(r['req_s'])} | {_fmt(r['p50_ms'])} | {_fmt(r['p99_ms'])} "
            f"| {_fmt(r['mb_s'])} | {_fmt(r['body_bytes'] / 1e6, 2)} | {_fmt(r.get('idle_mb'))} "
            f"| {_fmt(r.get('peak_mb'))} | {_fmt(r.get('cpu_us_per_req'))} | {or_na(r.get('steal'), '.0%')} "
            f"| {err} | {_fmt(vs_naive, 2)} | {_fmt(vs_floor, 2)} | {_fmt(vs_off, 2)} |"
        )
    errors = [r for r in rows if r.get("first_error")]
    if errors:
        lines += ["", "## First error per point", ""]
        lines += [f"- {r['scenario']} / {r['server']} c={r['concurrency']}: `{r['first_error'][:200]}`" for r in errors]
    return "\n".join(lines) + "\n"
