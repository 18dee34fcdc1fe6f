"""Shared by the benchmarks: conditions, a served rapport process, load from threads."""

from __future__ import annotations

import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
DATASET = Path(
    os.environ.get("RAPPORT_TEST_DATASET", ROOT.parent / "shared/datasets/dreambooth-512")
)


def conditions(**extra: object) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    parts = [
        f"cores={os.cpu_count()}",
        f"cpu={cpu}",
        f"torch={torch.__version__}",
        f"torch_threads={torch.get_num_threads()}",
        f"cuda={torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}",
        *(f"{k}={v}" for k, v in extra.items()),
    ]
    return " ".join(parts)


def dataset_jpegs(count: int) -> list[bytes]:
    files = sorted(p for p in DATASET.rglob("*.jpg"))
    return [files[i % len(files)].read_bytes() for i in range(count)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


class Served:
    """``rapport serve`` on a fresh data folder, in a child process; ``root`` may name
    another checkout of rapport (a baseline) to serve instead of this one."""

    def __init__(
        self,
        workers: str = "1",
        root: Path = ROOT,
        *,
        env: Mapping[str, str] | None = None,
        **settings: str,
    ) -> None:
        self.data = tempfile.mkdtemp(prefix="rapport-bench-")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAPPORT_")}
        # The limiter stays on (its cost is part of every request) but never throttles.
        self.env.update(
            {
                "RAPPORT_DATA_DIR": self.data,
                "RAPPORT_RATE_LIMIT_RPS": "1000000",
                **(env or {}),
                **settings,
            }
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(Path(self.data) / "serve.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app",
                "--log-level",
                "warning",
                "serve",
                "--port",
                str(self.port),
                "--workers",
                workers,
            ],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=root,
        )
        deadline = time.monotonic() + 300
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"rapport serve exited; see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.process.kill()
                raise SystemExit(f"rapport serve did not get ready; see {self.log.name}")
            time.sleep(0.2)
        self.root = root
        try:
            self.key = self.new_key("bench")
        except BaseException:
            self.stop()
            raise

    def new_key(self, tenant: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "app", "keys", "create", "--tenant", tenant],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            cwd=self.root,
        ).stdout.strip()

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=120
        )

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server so far: its process and its workers."""
        total, pending = 0.0, [self.process.pid]
        while pending:
            pid = pending.pop()
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except FileNotFoundError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            pending += [int(child) for child in children]
        return total

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0


def run_load(
    served: Served,
    clients: int,
    requests_per_client: int,
    call: Callable[[httpx.Client, int], httpx.Response],
) -> LoadResult:
    """``clients`` threads, each with its own connection, each making a fixed number of calls."""
    result = LoadResult(requests=clients * requests_per_client, seconds=0.0)
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def worker(worker_id: int) -> None:
        with served.client() as client:
            barrier.wait()
            for n in range(requests_per_client):
                started = time.perf_counter()
                response = call(client, worker_id * requests_per_client + n)
                elapsed = time.perf_counter() - started
                with lock:
                    if response.status_code >= 400:
                        result.errors += 1
                    result.latencies.append(elapsed)
                    timing = response.headers.get("server-timing", "")
                    for item in filter(None, (i.strip() for i in timing.split(","))):
                        name, _, ms = item.partition(";dur=")
                        result.stages.setdefault(name, []).append(float(ms) / 1000)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - started
    return result


def returning(value: T) -> Callable[[], T]:
    """A load function for a cache, giving back ``value`` already built."""
    return lambda: value
