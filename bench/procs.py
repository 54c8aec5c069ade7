"""Servers as subprocesses, their memory from /proc, and the machine's description."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """One server process group: started, awaited until ready, stopped (TERM, then KILL)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], ready_path: str, log_dir: Path):
        self.name, self.argv, self.ready_path = name, argv, ready_path
        self.env = {**os.environ, **env}
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 90.0) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(self.url(self.ready_path), timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready in {timeout_s}s: {self.log_tail()}")

    def url(self, path: str = "") -> str:
        return f"http://{HOST}:{self.port}{path}"

    @property
    def port(self) -> int:
        return int(self.argv[self.argv.index("--port") + 1])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # our own process group: the server and its workers
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, n: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


# --- memory -------------------------------------------------------------------------------------
def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _stat_fields(proc: Path) -> list[str]:
    """The fields of ``proc``/stat after the command name (which may itself hold spaces and
    parentheses): [0] state, [1] parent id, [11] utime, [12] stime. OSError if it has ended."""
    return (proc / "stat").read_text().rsplit(")", 1)[1].split()


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from the parent ids in /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int(_stat_fields(entry)[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(root: int) -> float:
    """CPU time of ``root`` and its descendants so far, in seconds: each live thread's time on a
    CPU from /proc/PID/task/TID/schedstat (nanoseconds), or the process's utime + stime (clock
    ticks, 10 ms) where schedstat is missing."""
    total = 0.0
    for pid in process_tree(root):
        try:
            total += (
                sum(int((task / "schedstat").read_text().split()[0]) for task in Path(f"/proc/{pid}/task").iterdir())
                / 1e9
            )
        except (OSError, ValueError, IndexError):
            try:
                fields = _stat_fields(Path(f"/proc/{pid}"))
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except OSError:
                continue  # the process has ended
    return total


def machine_ticks() -> tuple[int, int]:
    """(steal, total) clock ticks of the whole machine so far, from /proc/stat: the share of
    time the hypervisor gave to other guests over an interval is how noisy the box was."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (values[7] if len(values) > 7 else 0), sum(values[:8])


class RssWatch:
    """Peak resident memory of a process tree over a block of code, in MB.

    The kernel's high-water mark (VmHWM) of each process is reset before (``clear_refs`` = 5) and
    read after; a 20 ms sampler of the summed VmRSS backs it up where the reset is not allowed.
    ``peak_mb`` is the larger of the two (the summed HWMs are an upper bound for a multi-process
    tree, exact for one process); ``idle_mb`` is the summed VmRSS just before.
    """

    def __init__(self, root: int):
        self.root = root
        self.idle_mb = self.peak_mb = 0.0
        self._sampled = 0
        self._stop = threading.Event()

    def _rss_kb(self) -> int:
        return sum(_status_kb(p, "VmRSS") for p in process_tree(self.root))

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self._sampled = max(self._sampled, self._rss_kb())

    def __enter__(self) -> RssWatch:
        for pid in process_tree(self.root):
            with contextlib.suppress(OSError):  # a process that has just exited
                Path(f"/proc/{pid}/clear_refs").write_text("5")
        self._sampled = idle = self._rss_kb()
        self.idle_mb = idle / 1024
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        hwm = sum(_status_kb(p, "VmHWM") for p in process_tree(self.root))
        self.peak_mb = max(hwm, self._sampled) / 1024


# --- the machine --------------------------------------------------------------------------------
def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = _status_meminfo("MemTotal")
    import numpy
    import torch

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "git_commit": git_commit(),
        "load_avg_at_start": os.getloadavg(),
        "argv": sys.argv[1:],
    }


def git_commit() -> str | None:
    """HEAD's commit, read from .git's files (no git process)."""
    git = ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:12]
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()[:12]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0][:12]
    except OSError:
        pass
    return None


def _status_meminfo(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0
