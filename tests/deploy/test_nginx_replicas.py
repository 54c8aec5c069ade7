"""Replicas behind the load balancer, for real: three `python -m service` processes (the image's
command) behind nginx running deploy/nginx/loss-service.conf unchanged.

- A replica killed with SIGKILL under steady load costs no client request: nginx retries
  the POST on another replica, and the restarted replica rejoins the pool.
- A replica sent SIGTERM stops accepting connections but answers the requests it holds, then
  exits with status 0.

Everything listens on 127.0.0.1; every wait is bounded in time and in count.
"""

from __future__ import annotations

import grp
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_CONF = ROOT / "deploy" / "nginx" / "loss-service.conf"
BODY = {"loss": "mse", "inputs": {"input": [[1.0, 2.0]], "target": [[0.0, 2.5]]}}
EXPECTED = 0.625  # mean of (1 - 0)^2 and (2 - 2.5)^2
pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    """nginx, installed with apt-get when it is missing and we are root (as in CI)."""
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail("nginx is not installed and this user cannot install it: apt-get install nginx")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "nginx"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.access(found, os.X_OK), "apt-get installed nginx, but no nginx binary was found"
    return found


class Replica:
    """One `python -m service` on a loopback port, configured by environment variables only."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOSS_SERVICE_")}
        env.update(
            LOSS_SERVICE_HOST="127.0.0.1",
            LOSS_SERVICE_PORT=str(self.port),
            LOSS_SERVICE_ENGINE__DEVICE="cpu",
            LOSS_SERVICE_ENGINE__TORCH_THREADS="1",
            LOSS_SERVICE_LOG_LEVEL="warning",
        )
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "service"], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    pytest.fail(f"replica on port {self.port} exited ({self.proc.returncode}):\n{tail(self.log)}")
                try:
                    if client.get(f"http://127.0.0.1:{self.port}/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        pytest.fail(f"replica on port {self.port} not ready in {timeout} s:\n{tail(self.log)}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def replicas(tmp_path):
    started: list[Replica] = []

    def start(n: int) -> list[Replica]:
        new = [Replica(free_port(), tmp_path / f"replica-{len(started) + i}.log") for i in range(n)]
        for r in new:
            r.start()
            started.append(r)
        for r in new:
            r.wait_ready()
        return new

    yield start
    for r in started:
        r.stop()


# Test-only wrapper: what differs from compose (paths, ports, the user, the upstream's
# addresses) lives here; the server's behaviour comes from loss-service.conf, included as is.
NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 512; }}
http {{
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    log_format lb '$msec $status "$upstream_addr" "$upstream_status"';
    access_log {tmp}/access.log lb;

    upstream loss_service {{
        least_conn;
{servers}
        keepalive 32;
    }}

    server {{
        listen 127.0.0.1:{port};
        include {server_conf};
    }}
}}
"""


@dataclass
class Nginx:
    url: str
    access_log: Path
    proc: subprocess.Popen

    def access_entries(self) -> list[tuple[float, int, list[str], list[str]]]:
        """(time, status, upstream addresses tried, their statuses) per proxied request."""
        entries = []
        for line in self.access_log.read_text().splitlines():
            msec, status, addrs, statuses = line.split(" ", 3)
            tried = [a.strip() for a in addrs.strip('"').split(",")]
            entries.append((float(msec), int(status), tried, [s.strip() for s in statuses.strip('"').split(",")]))
        return entries


@pytest.fixture
def nginx(nginx_bin, tmp_path):
    procs: list[subprocess.Popen] = []

    def start(backends: list[Replica]) -> Nginx:
        tmp = tmp_path / "nginx"
        tmp.mkdir()
        port = free_port()
        user = ""
        if os.geteuid() == 0:  # workers would otherwise drop to `nobody`, who cannot write to tmp
            user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
        servers = "\n".join(f"        server 127.0.0.1:{r.port} max_fails=1 fail_timeout=2s;" for r in backends)
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=user, tmp=tmp, servers=servers, port=port, server_conf=SERVER_CONF))
        cmd = [nginx_bin, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)]
        check = subprocess.run([*cmd, "-t"], capture_output=True, text=True, timeout=30, check=False)
        assert check.returncode == 0, check.stderr
        with (tmp / "stderr.log").open("ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        procs.append(proc)
        lb = Nginx(f"http://127.0.0.1:{port}", tmp / "access.log", proc)
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                assert proc.poll() is None, f"nginx exited:\n{tail(tmp / 'error.log')}"
                try:
                    if (
                        client.get(f"{lb.url}/nginx-health").status_code == 200
                        and client.get(f"{lb.url}/readyz").status_code == 200
                    ):
                        return lb
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        pytest.fail(f"nginx did not answer in 30 s:\n{tail(tmp / 'error.log')}")

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGQUIT)  # graceful
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class Load:
    """A few client threads POSTing BODY through the load balancer until stopped or capped,
    each pausing between requests so that the load stays steady and leaves CPU to restart a
    replica."""

    url: str
    threads: int = 4
    pause_s: float = 0.01
    max_requests: int = 4000  # per thread
    max_seconds: float = 60
    results: list[tuple[float, int, object]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._client, daemon=True) for _ in range(self.threads)]

    def __enter__(self) -> Load:
        for w in self._workers:
            w.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for w in self._workers:
            w.join(60)
        assert not any(w.is_alive() for w in self._workers), "client threads did not stop"

    def count(self) -> int:
        with self._lock:
            return len(self.results)

    def _client(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for _ in range(self.max_requests):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    r = client.post("/v1/evaluate", json=BODY)
                    outcome = (r.status_code, r.json().get("value") if r.status_code == 200 else r.text)
                except Exception as exc:
                    outcome = (0, repr(exc))
                with self._lock:
                    self.results.append((time.time(), *outcome))
                self.stop.wait(self.pause_s)

    def wait_for(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.count() >= n, f"only {self.count()} requests in {timeout} s"


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"{what}: not within {timeout} s")


def test_sigkill_of_a_replica_under_load_loses_no_request(replicas, nginx):
    pool = replicas(3)
    lb = nginx(pool)
    victim = pool[0]
    victim_addr = f"127.0.0.1:{victim.port}"

    with Load(lb.url) as load:
        load.wait_for(50, timeout=30)
        victim.proc.kill()
        assert victim.proc.wait(10) == -signal.SIGKILL
        killed_at = time.time()
        load.wait_for(load.count() + 50, timeout=30)  # served by the survivors meanwhile

        victim.start()  # same port, same command
        victim.wait_ready()
        back_at = time.time()

        def victim_serves_again() -> bool:
            return any(
                t > back_at and tried[-1] == victim_addr and status == 200
                for t, status, tried, _ in lb.access_entries()
            )

        wait_until(victim_serves_again, timeout=20, what="the restarted replica rejoining the pool")
        load.wait_for(load.count() + 50, timeout=30)

    failures = [
        (status, value) for _, status, value in load.results if status != 200 or value != pytest.approx(EXPECTED)
    ]
    assert not failures, f"{len(failures)} of {len(load.results)} requests failed, e.g. {failures[:5]}"
    assert sum(t < killed_at for t, *_ in load.results) >= 50
    assert sum(t > back_at for t, *_ in load.results) >= 50
    retried = [e for e in lb.access_entries() if len(e[2]) > 1]
    assert any(victim_addr in tried[:-1] for _, _, tried, _ in retried), (
        "no request was retried away from the killed replica: the test did not exercise failover"
    )


def _send_head(port: int, length: int) -> socket.socket:
    """Open a POST whose body is held back until the server asks for it (100 Continue): the
    request is then inside the application, waiting for its body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        "POST /v1/evaluate HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {length}\r\n"
        "Expect: 100-continue\r\n"
        "Connection: close\r\n\r\n"
    )
    sock.sendall(head.encode())
    interim = b""
    while not interim.endswith(b"\r\n\r\n") and len(interim) < 1024:
        chunk = sock.recv(1)
        if not chunk:
            break
        interim += chunk
    assert interim.startswith(b"HTTP/1.1 100"), interim
    return sock


def _finish(sock: socket.socket, body: bytes) -> tuple[int, dict | str]:
    with sock:
        sock.sendall(body)
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
            data = response.read()
        finally:
            response.close()
    return response.status, json.loads(data) if response.status == 200 else data.decode(errors="replace")


def _refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def test_sigterm_finishes_in_flight_requests_and_exits_0(replicas):
    (replica,) = replicas(1)
    rows = 50_000  # ~1 MB of JSON per request: parsing and computing take a noticeable moment
    body = json.dumps({"loss": "mse", "inputs": {"input": [[1.0, 2.0]] * rows, "target": [[0.0, 2.5]] * rows}}).encode()
    held = [_send_head(replica.port, len(body)) for _ in range(4)]

    replica.proc.send_signal(signal.SIGTERM)
    # It stops accepting first: the listener closes while the held requests stay open.
    wait_until(lambda: _refuses_connections(replica.port), timeout=15, what="the listener closing after SIGTERM")
    assert replica.proc.poll() is None, "the replica exited with requests in flight"

    results: list[tuple[int, object]] = [(0, "not run")] * len(held)

    def finish(i: int, sock: socket.socket) -> None:
        try:
            results[i] = _finish(sock, body)
        except Exception as exc:
            results[i] = (0, repr(exc))

    senders = [threading.Thread(target=finish, args=(i, s)) for i, s in enumerate(held)]
    for t in senders:
        t.start()
    for t in senders:
        t.join(60)
    assert not any(t.is_alive() for t in senders), "a held request got no answer in 60 s"

    for status, content in results:
        assert status == 200, f"{status}: {content}\n{tail(replica.log)}"
        assert content["value"] == pytest.approx(EXPECTED)
    try:
        code = replica.proc.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the replica did not exit within 30 s of its last answer:\n{tail(replica.log)}")
    assert code == 0, f"exit status {code} after a clean drain:\n{tail(replica.log)}"
