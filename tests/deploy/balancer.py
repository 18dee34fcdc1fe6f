"""HAProxy with the shipped configuration (docker/haproxy.cfg), pointed at loopback servers.

Used by the balancer tests and by bench/replicas.py.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loopback_config(replica_ports: list[int], port: int, *, names: list[str] | None = None) -> str:
    """docker/haproxy.cfg with static loopback servers instead of DNS, bound to loopback."""
    config = (ROOT / "docker/haproxy.cfg").read_text()
    config = re.sub(r"^resolvers dns\n(?:    .*\n)+", "", config, flags=re.M)
    config = config.replace("    bind :8000\n", f"    bind 127.0.0.1:{port}\n")
    names = names or [f"r{i}" for i in range(len(replica_ports))]
    servers = "".join(
        f"    server {name} 127.0.0.1:{p}\n" for name, p in zip(names, replica_ports, strict=True)
    )
    config, count = re.subn(r"^    server-template .*\n", servers, config, flags=re.M)
    assert count == 1, "docker/haproxy.cfg has no server-template line"
    return config


class Balancer:
    """A foreground ``haproxy`` process in front of ``replica_ports``."""

    def __init__(self, replica_ports: list[int], folder: Path | None = None) -> None:
        binary = shutil.which("haproxy")
        if binary is None:
            raise RuntimeError("haproxy is not installed (Debian: apt-get install haproxy)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folder = folder or Path(tempfile.mkdtemp(prefix="rapport-haproxy-"))
        config = folder / "haproxy.cfg"
        config.write_text(loopback_config(replica_ports, self.port))
        checked = subprocess.run([binary, "-c", "-q", "-f", str(config)], capture_output=True)
        if checked.returncode:
            raise RuntimeError(checked.stderr.decode())
        self._errors = (folder / "haproxy.err").open("w")
        self.process = subprocess.Popen(
            [binary, "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=self._errors
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"haproxy did not forward; see {folder}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self._errors.close()
