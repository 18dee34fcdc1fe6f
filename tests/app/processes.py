"""Real ``rapport`` processes for the tests that need them: the CLI and served workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

RAPPORT = [sys.executable, "-m", "app"]


def rapport_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a process on the tiny model, with nothing of the caller's RAPPORT_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPPORT_")}
    env.update(
        {
            "RAPPORT_DATA_DIR": str(data_dir),
            "RAPPORT_CLIP_MODEL": "rapport-test-tiny",
            "RAPPORT_CLIP_PRETRAINED": "none",
        }
        | extra
    )
    return env


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        RAPPORT + args, env=env, capture_output=True, text=True, timeout=120, cwd=cwd
    )


def messages(stderr: str) -> list[str]:
    """The lines of ``stderr`` that are not log records (those start with a date)."""
    return [line for line in stderr.splitlines() if line and not line[:4].isdigit()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """``rapport serve`` in a child process, its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("a") as output:  # a restart on the same log appends
            self.process = subprocess.Popen(
                [*RAPPORT, "serve", "--port", str(self.port), *args],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 120) -> ServeProcess:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"rapport serve exited:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"rapport serve did not get ready:\n{self.log.read_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
