"""Soak: a long run at saturation against 2 replicas behind a real nginx, with malformed requests,
client disconnects and a replica restart, watching statuses, latency, readiness and memory.

    .venv/bin/python bench/soak.py                 # 10 minutes (the documented run)
    .venv/bin/python bench/soak.py --minutes 1     # a quick check

What runs: two `python -m service` replicas (the image's command, one torch thread each, bench/
procs.Server) behind nginx with deploy/nginx/loss-service.conf included unchanged (as
tests/deploy/test_nginx_replicas.py runs it; nginx is installed with apt-get when missing and we
are root). ``--concurrency`` closed-loop clients (raw keep-alive HTTP/1.1, bench/load.Connection)
send, through nginx:

- 88% good requests (five bodies: small and medium JSON, gradients, .npy multipart); each 200's
  ``value`` must equal what the same body got alone from a replica before the load started;
- 10% malformed ones, each with the status it must get: bad JSON (400), an empty body (400), a
  corrupt .npy (400), multipart without a boundary (400), an unknown loss (404), a wrong content
  type (415), wrong shapes (422), an unknown dtype (422), a class index out of range (422);
- 1% that disconnect mid-body (the head and half of a 2 MB body, then close) and 1% that
  disconnect mid-response (a request whose answer is several MB; 64 bytes read, then close);
  half of these go straight to a replica (nginx buffers bodies and answers, so only a direct
  client exercises the service's own handling of them).

At 40% of the run, replica 0 gets SIGTERM (it drains and must exit 0) and is started again on its
port. Decided: nginx retries errors, timeouts, 502 and 503 on the other replica for POST too
(``proxy_next_upstream ... non_idempotent``, loss-service.conf), so a client must never see a 502
or 503, not even in the restart window; any status other than 200 for a good request, or than
its own 4xx for a malformed one, or a transport error, is unexpected (those in the restart window
are marked so). /readyz of nginx and of each replica is polled every 0.5 s; each replica's RSS
(its process tree) every 30 s.

Printed, and written with the machine's description to bench/results/soak-latest.md and .json:
total requests, counts by kind and status, the unexpected ones (with samples), p50/p99 latency of
good requests in the first and the last minute, throughput per minute, /readyz counts and
transitions, RSS samples, the restart's timings, and nginx's retries and 499s from its access log.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import grp
import io
import json
import os
import pwd
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import Connection
from procs import HOST, ROOT, Server, _status_kb, free_port, machine, process_tree

SERVER_CONF = ROOT / "deploy" / "nginx" / "loss-service.conf"
RESULTS = ROOT / "bench" / "results"
READY_POLL_S = 0.5
RSS_EVERY_S = 30.0
RESTART_AT = 0.4  # of the run
RESTART_GRACE_S = 5.0  # after the restarted replica is ready, still "the restart window"

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    log_format lb '$msec $status "$upstream_addr" "$upstream_status" $request_time';
    access_log {tmp}/access.log lb;

    upstream loss_service {{
        least_conn;
{servers}
        keepalive 32;
    }}

    server {{
        listen {host}:{port};
        include {server_conf};
    }}
}}
"""


# --- the requests ------------------------------------------------------------------------------
@dataclass
class Req:
    kind: str  # good:<name>, bad:<name>, cut-body, cut-response
    raw: bytes  # the whole HTTP request
    expect: int | None  # the status it must get (None: a disconnect, no status)
    value: float | None = None  # a good request's value alone (filled in before the load)
    direct: bool = False  # a disconnect sent straight to a replica


def npy_b64(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, arr)
    return base64.b64encode(buf.getvalue()).decode()


def http(host: str, body: bytes, ctype: str | None = "application/json", path: str = "/v1/evaluate") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
    if ctype is not None:
        head += f"Content-Type: {ctype}\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def multipart(fields: dict[str, bytes], files: dict[str, bytes], boundary: str = "soakboundary") -> bytes:
    out = b""
    for name, data in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + data + b"\r\n"
    for name, data in files.items():
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.npy"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()


def requests(host: str) -> tuple[list[Req], list[Req], Req, Req]:
    """(good, bad, cut-body, cut-response) requests, serialised once."""
    rng = np.random.default_rng(0)
    dumps = lambda o: json.dumps(o).encode()  # noqa: E731
    x = rng.standard_normal((8, 10)).round(4)
    t = rng.integers(0, 10, 8)
    seg = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    seg_t = rng.integers(0, 3, (2, 8, 8))
    h_in, h_t = rng.standard_normal((4, 3, 5)), rng.standard_normal((4, 3, 5))
    med = rng.standard_normal((64, 256)).astype(np.float32)
    buf_in, buf_t = io.BytesIO(), io.BytesIO()
    np.save(buf_in, h_in)
    np.save(buf_t, h_t)
    huber_mp = multipart(
        {
            "request": dumps(
                {
                    "loss": {"name": "huber", "params": {"delta": 0.5}},
                    "return_grad": ["input"],
                    "response_encoding": "npy",
                }
            )
        },
        {"input": buf_in.getvalue(), "target": buf_t.getvalue()},
    )
    good = [
        Req(
            "good:mse",
            http(host, dumps({"loss": "mse", "inputs": {"input": [[1.0, 2.0]], "target": [[0.0, 2.5]]}})),
            200,
        ),
        Req(
            "good:cross_entropy+grad",
            http(
                host,
                dumps(
                    {
                        "loss": {"name": "cross_entropy", "params": {"label_smoothing": 0.1}},
                        "inputs": {"input": x.tolist(), "target": t.tolist()},
                        "return_grad": True,
                    }
                ),
            ),
            200,
        ),
        Req(
            "good:focal-npy",
            http(
                host,
                dumps(
                    {
                        "loss": "focal",
                        "inputs": {"input": {"npy": npy_b64(seg)}, "target": {"npy": npy_b64(seg_t)}},
                        "return_elementwise": True,
                    }
                ),
            ),
            200,
        ),
        Req("good:huber-multipart", http(host, huber_mp, "multipart/form-data; boundary=soakboundary"), 200),
        Req(
            "good:mse-64x256",
            http(
                host,
                dumps(
                    {
                        "loss": {"name": "mse", "reduction": "sum"},
                        "inputs": {
                            "input": {"data": med.reshape(-1).tolist(), "shape": [64, 256], "dtype": "float32"},
                            "target": {"npy": npy_b64(np.zeros((64, 256), np.float32))},
                        },
                    }
                ),
            ),
            200,
        ),
    ]
    small = {"input": [[1.0, 2.0]], "target": [[0.0, 2.5]]}
    bad = [
        Req("bad:json", http(host, b'{"loss": "mse", "inputs": {'), 400),
        Req("bad:empty", http(host, b""), 400),
        Req(
            "bad:npy",
            http(
                host,
                dumps(
                    {
                        "loss": "mse",
                        "inputs": {
                            "input": {"npy": base64.b64encode(b"\x93NUMPY\x01\x00garbage").decode()},
                            "target": [[0.0, 2.5]],
                        },
                    }
                ),
            ),
            400,
        ),
        Req("bad:multipart", http(host, multipart({"request": b'{"loss": "mse"}'}, {}), "multipart/form-data"), 400),
        Req("bad:unknown-loss", http(host, dumps({"loss": "msee", "inputs": small})), 404),
        Req("bad:content-type", http(host, dumps({"loss": "mse", "inputs": small}), "text/plain"), 415),
        Req(
            "bad:shape",
            http(host, dumps({"loss": "mse", "inputs": {"input": [[1.0, 2.0]], "target": [[1.0, 2.0, 3.0]]}})),
            422,
        ),
        Req(
            "bad:dtype",
            http(
                host,
                dumps(
                    {
                        "loss": "mse",
                        "inputs": {"input": {"data": [[1.0, 2.0]], "dtype": "float128"}, "target": [[0.0, 2.5]]},
                    }
                ),
            ),
            422,
        ),
        Req(
            "bad:class-index",
            http(host, dumps({"loss": "cross_entropy", "inputs": {"input": [[1.0, 2.0]], "target": [5]}})),
            422,
        ),
    ]
    big_in = rng.standard_normal((1000, 100)).astype(np.float32)
    cut_body = Req(
        "cut-body",
        http(host, dumps({"loss": "mse", "inputs": {"input": big_in.tolist(), "target": big_in.tolist()}})),
        None,
    )
    cut_response = Req(
        "cut-response",
        http(
            host,
            dumps(
                {
                    "loss": "mse",
                    "inputs": {"input": {"npy": npy_b64(big_in)}, "target": {"npy": npy_b64(big_in * 0)}},
                    "return_elementwise": True,
                    "return_grad": True,
                }
            ),
        ),
        None,
    )
    return good, bad, cut_body, cut_response


# --- processes -------------------------------------------------------------------------------
def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("nginx is not installed and this user cannot install it: apt-get install nginx")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "nginx"]):
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    return shutil.which("nginx") or "/usr/sbin/nginx"


def replica(index: int, port: int, log_dir: Path, suffix: str = "") -> Server:
    env = dict(
        LOSS_SERVICE_ENGINE__DEVICE="cpu",
        LOSS_SERVICE_ENGINE__TORCH_THREADS="1",
        LOSS_SERVICE_LOG_LEVEL="warning",
        LOSS_SERVICE_ACCESS_LOG="false",
    )
    argv = [sys.executable, "-m", "service", "--host", HOST, "--port", str(port)]
    server = Server(f"replica-{index}{suffix}", argv, env, "/readyz", log_dir)
    # the developer's LOSS_SERVICE_* settings never leak into the soak
    server.env = {k: v for k, v in server.env.items() if not k.startswith("LOSS_SERVICE_") or k in env}
    return server


class Nginx:
    def __init__(self, binary: str, ports: list[int], tmp: Path) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        user = ""
        if os.geteuid() == 0:  # workers would otherwise drop to `nobody`, who cannot write to tmp
            user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
        servers = "\n".join(f"        server {HOST}:{p} max_fails=1 fail_timeout=2s;" for p in ports)
        conf = tmp / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(user=user, tmp=tmp, servers=servers, host=HOST, port=self.port, server_conf=SERVER_CONF)
        )
        cmd = [binary, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)]
        check = subprocess.run([*cmd, "-t"], check=False, capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(check.stderr)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def access_log(self) -> dict:
        statuses: Counter[str] = Counter()
        upstream: Counter[str] = Counter()
        retried = 0
        examples = []
        path = self.tmp / "access.log"
        for line in path.read_text().splitlines() if path.exists() else []:
            m = re.match(r'(\S+) (\d+) "([^"]*)" "([^"]*)"', line)  # lists of upstreams hold ", "
            if m is None:
                continue
            statuses[m.group(2)] += 1
            tries = [s.strip() for s in m.group(4).split(",")]
            for s in tries:
                upstream[s] += 1
            if len(tries) > 1:
                retried += 1
                if len(examples) < 5:
                    examples.append(line)
        return {
            "statuses": dict(statuses),
            "upstream_statuses": dict(upstream),
            "retried": retried,
            "retried_examples": examples,
        }


def rss_mb(server: Server) -> float | None:
    if server.proc is None or server.proc.poll() is not None:
        return None
    return round(sum(_status_kb(p, "VmRSS") for p in process_tree(server.proc.pid)) / 1024, 1)


# --- the run ---------------------------------------------------------------------------------
@dataclass
class Run:
    t0: float
    results: list[tuple[float, str, int, float]] = field(default_factory=list)  # (t, kind, status, ms)
    unexpected: list[dict] = field(default_factory=list)
    wrong_values: list[dict] = field(default_factory=list)
    ready: dict[str, Counter] = field(default_factory=dict)
    transitions: list[tuple[float, str, str]] = field(default_factory=list)
    rss: list[dict] = field(default_factory=list)
    restart: dict = field(default_factory=dict)
    window: tuple[float, float] | None = None  # the restart window, seconds from t0

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def in_window(self, t: float) -> bool:
        return self.window is not None and self.window[0] <= t <= (self.window[1] or float("inf"))


async def get_status(port: int, path: str) -> str:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 2)
    except (TimeoutError, OSError):
        return "down"
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), 2)
        return line.split(b" ")[1].decode() if line.startswith(b"HTTP/") else "garbled"
    except (TimeoutError, OSError, IndexError):
        return "no answer"
    finally:
        writer.close()


async def poll_ready(run: Run, targets: dict[str, int], stop: asyncio.Event) -> None:
    last: dict[str, str] = {}
    while not stop.is_set():
        for name, port in targets.items():
            status = await get_status(port, "/readyz")
            run.ready.setdefault(name, Counter())[status] += 1
            if last.get(name) != status:
                run.transitions.append((round(run.now(), 2), name, status))
                last[name] = status
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), READY_POLL_S)


async def sample_rss(run: Run, replicas: list[Server], stop: asyncio.Event) -> None:
    while True:
        run.rss.append({"t": round(run.now(), 1), **{f"replica-{i}": rss_mb(r) for i, r in enumerate(replicas)}})
        try:
            await asyncio.wait_for(stop.wait(), RSS_EVERY_S)
            return
        except TimeoutError:
            pass


async def restart(run: Run, replicas: list[Server], at_s: float, log_dir: Path) -> None:
    await asyncio.sleep(at_s)
    victim = replicas[0]
    start = run.now()
    run.window = (start, None)  # type: ignore[assignment]
    os.killpg(victim.proc.pid, signal.SIGTERM)
    try:
        code = await asyncio.to_thread(victim.proc.wait, 60)
    except subprocess.TimeoutExpired:
        code = "did not exit in 60 s; killed"
        os.killpg(victim.proc.pid, signal.SIGKILL)
        await asyncio.to_thread(victim.proc.wait, 10)
    exited = run.now()
    again = replica(0, victim.port, log_dir, "-restarted")
    await asyncio.to_thread(again.start)
    ready = run.now()
    replicas[0] = again
    run.window = (start, ready + RESTART_GRACE_S)
    run.restart = {
        "sigterm_at_s": round(start, 2),
        "exit_code": code,
        "exited_after_s": round(exited - start, 2),
        "ready_again_after_s": round(ready - start, 2),
        "window_s": [round(start, 2), round(ready + RESTART_GRACE_S, 2)],
    }


async def disconnect(req: Req, port: int, mid_body: bool) -> None:
    """Send part of the body (or all of it and read 64 bytes of the answer), then close."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 5)
    except (TimeoutError, OSError):
        return
    try:
        if mid_body:
            writer.write(req.raw[: len(req.raw) // 2])
            await writer.drain()
            await asyncio.sleep(0.05)
        else:
            writer.write(req.raw)
            await writer.drain()
            await asyncio.wait_for(reader.read(64), 30)
    except (TimeoutError, OSError):
        pass
    finally:
        writer.transport.abort()  # RST, not a polite close: the rudest client


async def client(
    run: Run,
    lb_port: int,
    replica_ports: list[int],
    good: list[Req],
    bad: list[Req],
    cuts: list[Req],
    until: float,
    seed: int,
) -> None:
    rng = random.Random(seed)
    conn = Connection(HOST, lb_port)
    try:
        while run.now() < until:
            roll = rng.random()
            if roll < 0.02:
                req = cuts[0] if roll < 0.01 else cuts[1]
                direct = rng.random() < 0.5
                port = rng.choice(replica_ports) if direct else lb_port
                t = run.now()
                await disconnect(req, port, mid_body=req.kind == "cut-body")
                run.results.append((t, req.kind + ("-direct" if direct else ""), 0, (run.now() - t) * 1000))
                continue
            req = rng.choice(bad) if roll < 0.12 else rng.choice(good)
            t = run.now()
            try:
                status, data = await asyncio.wait_for(conn.request(req.raw), 120)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                status, data = 0, f"{type(exc).__name__}: {exc}".encode()
                await conn.close()
            ms = (run.now() - t) * 1000
            run.results.append((t, req.kind, status, ms))
            if status != req.expect:
                run.unexpected.append(
                    {
                        "t": round(t, 2),
                        "kind": req.kind,
                        "status": status,
                        "expected": req.expect,
                        "in_restart_window": run.in_window(t),
                        "body": data[:300].decode(errors="replace"),
                    }
                )
            elif req.value is not None:
                value = json.loads(data)["value"]
                if not np.isclose(value, req.value, rtol=1e-5, atol=1e-6):
                    run.wrong_values.append({"t": round(t, 2), "kind": req.kind, "got": value, "alone": req.value})
    finally:
        await conn.close()


def percentiles(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0, "p50_ms": None, "p99_ms": None}
    arr = np.array(xs)
    return {
        "n": len(xs),
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p99_ms": round(float(np.percentile(arr, 99)), 2),
    }


async def soak(args: argparse.Namespace, log_dir: Path) -> dict:
    duration = args.minutes * 60
    ports = [free_port(), free_port()]
    replicas = [replica(i, p, log_dir) for i, p in enumerate(ports)]
    nginx = None
    try:
        for r in replicas:
            await asyncio.to_thread(r.start)
        nginx = Nginx(nginx_binary(), ports, log_dir / "nginx")
        for _ in range(100):
            if await get_status(nginx.port, "/readyz") == "200":
                break
            await asyncio.sleep(0.1)
        lb_host = f"{HOST}:{nginx.port}"
        good, bad, cut_body, cut_response = requests(lb_host)
        for req in good:  # the value each good body gets alone, from a replica, before any load
            conn = Connection(HOST, ports[1])
            status, data = await conn.request(req.raw)
            await conn.close()
            if status != 200:
                raise RuntimeError(f"{req.kind} alone: {status} {data[:300]!r}")
            req.value = json.loads(data)["value"]
        for req in bad:  # and each malformed one gets its status alone
            conn = Connection(HOST, ports[1])
            status, data = await conn.request(req.raw)
            await conn.close()
            if status != req.expect:
                print(f"note: {req.kind} alone got {status}, not {req.expect}: {data[:200]!r}")

        run = Run(time.perf_counter())
        stop = asyncio.Event()
        targets = {"nginx": nginx.port, "replica-0": ports[0], "replica-1": ports[1]}
        background = [
            asyncio.create_task(poll_ready(run, targets, stop)),
            asyncio.create_task(sample_rss(run, replicas, stop)),
        ]
        restarter = asyncio.create_task(restart(run, replicas, max(10.0, duration * RESTART_AT), log_dir))
        cuts = [cut_body, cut_response]
        await asyncio.gather(
            *(client(run, nginx.port, ports, good, bad, cuts, duration, i) for i in range(args.concurrency))
        )
        elapsed = run.now()
        await restarter
        stop.set()
        await asyncio.gather(*background)
        run.rss.append({"t": round(run.now(), 1), **{f"replica-{i}": rss_mb(r) for i, r in enumerate(replicas)}})
    finally:
        exit_codes = {}
        if nginx is not None:
            nginx.stop()
        for i, r in enumerate(replicas):
            r.stop()
            exit_codes[f"replica-{i}"] = None if r.proc is None else r.proc.returncode
    lb = nginx.access_log()

    by_kind: dict[str, Counter] = {}
    for _, kind, status, _ in run.results:
        by_kind.setdefault(kind, Counter())[status] += 1
    statuses = Counter(status for _, _, status, _ in run.results if status)
    good_lat = [(t, ms) for t, kind, status, ms in run.results if kind.startswith("good:") and status == 200]
    first = [ms for t, ms in good_lat if t < 60]
    last = [ms for t, ms in good_lat if t >= elapsed - 60]
    per_minute = Counter(int(t // 60) for t, kind, status, _ in run.results if status)
    unexpected_by = Counter((u["kind"], u["status"], u["in_restart_window"]) for u in run.unexpected)
    return {
        "machine": machine(),
        "config": {
            "minutes": args.minutes,
            "concurrency": args.concurrency,
            "replicas": 2,
            "nginx_conf": str(SERVER_CONF.relative_to(ROOT)),
            "mix": "88% good, 10% malformed, "
            "1% disconnect mid-body, 1% disconnect mid-response (half of those straight to a replica)",
            "restart_at_s": max(10.0, duration * RESTART_AT),
        },
        "elapsed_s": round(elapsed, 1),
        "total_requests": len(run.results),
        "answered": sum(statuses.values()),
        "req_s": round(sum(statuses.values()) / elapsed, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "by_kind": {k: {str(s): n for s, n in sorted(c.items())} for k, c in sorted(by_kind.items())},
        "unexpected_total": len(run.unexpected),
        "unexpected_by": [
            {"kind": k, "status": s, "in_restart_window": w, "count": n} for (k, s, w), n in unexpected_by.most_common()
        ],
        "unexpected_samples": run.unexpected[:20],
        "wrong_values": len(run.wrong_values),
        "wrong_value_samples": run.wrong_values[:10],
        "latency_good_first_minute": percentiles(first),
        "latency_good_last_minute": percentiles(last),
        "answered_per_minute": {str(k): v for k, v in sorted(per_minute.items())},
        "readyz": {k: dict(sorted(c.items())) for k, c in run.ready.items()},
        "readyz_transitions": run.transitions,
        "rss_mb": run.rss,
        "restart": run.restart,
        "exit_codes_at_end": exit_codes,
        "nginx": lb,
        "logs": str(log_dir),
    }


def markdown(out: dict) -> str:
    m = out["machine"]
    lines = [
        f"# loss-service soak ({out['config']['minutes']} min)",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM, Linux {m['kernel']}",
        f"- python {m['python']}, torch {m['torch']}, numpy {m['numpy']}; commit {m['git_commit'] or 'n/a'}; "
        f"{m['date']}",
        f"- load average at start {tuple(round(x, 2) for x in m['load_avg_at_start'])}",
        f"- 2 replicas (`python -m service`, 1 torch thread each) behind nginx ({out['config']['nginx_conf']}); "
        f"{out['config']['concurrency']} closed-loop clients; {out['config']['mix']}; replica 0 restarted "
        f"(SIGTERM, then started again) at {out['config']['restart_at_s']:.0f} s",
        "- unexpected: a good request not answered 200, a malformed one not its own 4xx, a transport error; "
        "502/503 count as unexpected everywhere (nginx retries them on the other replica)",
        "",
        "## Totals",
        "",
        f"- requests: {out['total_requests']} in {out['elapsed_s']} s ({out['answered']} answered, "
        f"{out['req_s']} answered/s)",
        f"- by status: {out['statuses']}",
        f"- **unexpected: {out['unexpected_total']}**; wrong values: {out['wrong_values']}",
    ]
    for u in out["unexpected_by"]:
        lines.append(f"  - {u['kind']} -> {u['status']}: {u['count']}" + (" (restart window)" * u["in_restart_window"]))
    lines += ["", "| kind | statuses (0: the client hung up, no status) |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in out["by_kind"].items()]
    f, la = out["latency_good_first_minute"], out["latency_good_last_minute"]
    lines += [
        "",
        "## Latency of good requests (200)",
        "",
        "| window | n | p50 ms | p99 ms |",
        "| --- | ---: | ---: | ---: |",
        f"| first minute | {f['n']} | {f['p50_ms']} | {f['p99_ms']} |",
        f"| last minute | {la['n']} | {la['p50_ms']} | {la['p99_ms']} |",
        "",
        "(a run under 2 minutes: the two windows overlap)" if out["elapsed_s"] < 120 else "",
        f"answered per minute: {out['answered_per_minute']}",
        "",
        "## /readyz (polled every 0.5 s)",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in out["readyz"].items()]
    lines.append(
        "- transitions (s, target, status): " + ", ".join(f"{t} {n} {s}" for t, n, s in out["readyz_transitions"])
    )
    r = out["restart"]
    lines += ["", "## Restart of replica 0", ""]
    lines.append(
        f"- SIGTERM at {r.get('sigterm_at_s')} s; exit code {r.get('exit_code')} after {r.get('exited_after_s')} s; "
        f"ready again {r.get('ready_again_after_s')} s after the SIGTERM; "
        f"exit codes at the end {out['exit_codes_at_end']}"
    )
    lb = out["nginx"]
    lines.append(
        f"- nginx: statuses {lb['statuses']}; requests retried on another replica: {lb['retried']}; "
        f"upstream statuses {lb['upstream_statuses']}"
    )
    lines += [
        "",
        "## RSS per replica (MB, process tree)",
        "",
        "| s | replica-0 | replica-1 |",
        "| ---: | ---: | ---: |",
    ]
    lines += [f"| {s['t']} | {s.get('replica-0')} | {s.get('replica-1')} |" for s in out["rss_mb"]]
    if out["unexpected_samples"]:
        lines += ["", "## Unexpected answers (first 20)", ""]
        lines += [
            f"- {u['t']} s {u['kind']}: {u['status']} (expected {u['expected']})"
            f"{' in the restart window' if u['in_restart_window'] else ''}: `{u['body'][:160]}`"
            for u in out["unexpected_samples"]
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load (default 10)")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop clients (default 32)")
    parser.add_argument("--out", type=Path, default=RESULTS / "soak-latest", help="results path, without suffix")
    args = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="loss-service-soak-"))
    out = asyncio.run(soak(args, log_dir))
    text = markdown(out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=1, default=str) + "\n")
    args.out.with_suffix(".md").write_text(text)
    print(text)
    print(f"written: {args.out.with_suffix('.md')} and .json; logs in {log_dir}")
    return 1 if out["unexpected_total"] or out["wrong_values"] else 0


if __name__ == "__main__":
    sys.exit(main())
