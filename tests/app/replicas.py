"""Three ``rapport serve`` replicas behind a real HAProxy, as a deployment runs them.

Each replica has its own data folder (no shared disk); they share one
PostgreSQL database, one S3 bucket (moto's server on loopback), one Redis and
one server secret. HAProxy routes by user (consistent hashing on the user id in
the path) and health-checks /readyz, with the shipped config (docker/haproxy.cfg),
checked more often and with a stats page and an X-Replica header added for the test.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from app.security.keys import create_key
from tests.app.processes import ServeProcess, free_port, rapport_env
from tests.deploy.balancer import loopback_config
from tests.s3_server import S3Server

# What the test changes in the shipped config: faster health checks and slow start (a
# failover in about a second, not four), which replica answered, and a stats page.
TEST_CHECKS = "default-server check inter 300ms fastinter 200ms fall 2 rise 2 slowstart 1s"
TEST_STATS = """
listen stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
"""
NAMES = ("r1", "r2", "r3")
SECRET = "replica-test-server-secret-" + "0123456789abcdef" * 2  # shared by every replica


class Balancer:
    """HAProxy in the foreground, on a loopback port, its config written from the template."""

    def __init__(self, workdir: Path, replicas: dict[str, int]) -> None:
        self.port, self.stats_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        shipped = loopback_config(list(replicas.values()), self.port, names=list(replicas))
        checks = re.compile(r"^    default-server .*$", re.M)
        assert checks.search(shipped), "docker/haproxy.cfg has no default-server line"
        text = checks.sub(f"    {TEST_CHECKS}\n    http-response set-header X-Replica %s", shipped)
        # The shipped config logs every request to stdout; the test keeps errors only.
        text = text.replace("    option httplog\n", "")
        config = workdir / "haproxy.cfg"
        config.write_text(text + TEST_STATS.format(stats_port=self.stats_port))
        subprocess.run(["haproxy", "-c", "-q", "-f", str(config)], check=True, timeout=30)
        self.log = workdir / "haproxy.log"
        with self.log.open("w") as output:
            self.process = subprocess.Popen(
                ["haproxy", "-db", "-f", str(config)], stdout=output, stderr=subprocess.STDOUT
            )

    def states(self) -> dict[str, str]:
        """Each replica's state as HAProxy's health checks see it: UP, DOWN, ..."""
        answer = httpx.get(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=5)
        rows = csv.DictReader(io.StringIO(answer.text.lstrip("# ")))
        return {
            row["svname"]: row["status"].split()[0]
            for row in rows
            if row["pxname"] == "rapport" and row["svname"] in NAMES
        }

    def wait_for(self, want: dict[str, str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"haproxy exited:\n{self.log.read_text()}")
            try:
                states = self.states()
                if all(states.get(name) == state for name, state in want.items()):
                    return
            except httpx.TransportError:
                states = {}
            if time.monotonic() > deadline:
                raise AssertionError(f"replicas {states}, wanted {want}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Cluster:
    """The replicas, the balancer and what they share; ``key`` is a tenant's API key."""

    def __init__(
        self, workdir: Path, database_url: str, s3: S3Server, redis_url: str, **extra: str
    ) -> None:
        self.workdir, self.database_url, self.s3 = workdir, database_url, s3
        self.bucket = s3.new_bucket()
        self.envs = {
            name: rapport_env(
                workdir / name,  # each replica's own data folder
                RAPPORT_DATABASE_URL=database_url,
                RAPPORT_SECRET_KEY=SECRET,
                RAPPORT_REDIS_URL=redis_url,
                RAPPORT_REDIS_PREFIX=f"replicas-{uuid.uuid4().hex}:",
                RAPPORT_ACCESS_LOG="false",
                RAPPORT_THREADPOOL_SIZE="16",
                RAPPORT_TORCH_THREADS="1",
                **s3.env(self.bucket, s3_max_attempts=3),
                **extra,
            )
            for name in NAMES
        }
        self.replicas: dict[str, ServeProcess] = {}
        self._balancer: Balancer | None = None
        try:
            for name, env in self.envs.items():
                self.replicas[name] = ServeProcess(env, workdir / f"{name}.log")
            for replica in self.replicas.values():
                replica.wait_ready(timeout=180)
            self._balancer = Balancer(workdir, {n: r.port for n, r in self.replicas.items()})
            self.balancer.wait_for(dict.fromkeys(NAMES, "UP"))
        except BaseException:
            self.stop()
            raise

    @property
    def balancer(self) -> Balancer:
        assert self._balancer is not None, "the balancer has not started"
        return self._balancer

    def new_key(self, tenant: str) -> str:
        engine = create_engine(self.database_url)
        try:
            with Session(engine) as session:
                key = create_key(session=session, tenant_name=tenant, secret=SECRET.encode())
                session.commit()
        finally:
            engine.dispose()
        return key

    def client(self, key: str, replica: str | None = None) -> httpx.Client:
        """A client of the balancer, or of one replica directly."""
        url = self.replicas[replica].url if replica else self.balancer.url
        return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown, requests in flight are cut."""
        process = self.replicas[name].process
        process.send_signal(signal.SIGKILL)
        process.wait()

    def restart(self, name: str) -> ServeProcess:
        old = self.replicas[name]
        self.replicas[name] = ServeProcess(self.envs[name], old.log, port=old.port)
        return self.replicas[name].wait_ready(timeout=180)

    def stop(self) -> None:
        if self._balancer is not None:
            self._balancer.stop()
        running = [r.process for r in self.replicas.values() if r.process.poll() is None]
        for process in running:  # all at once: each takes seconds to shut down
            process.send_signal(signal.SIGINT)
        for process in running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def local_photo_files(self) -> list[Path]:
        """Photo files in the replicas' own data folders: none, the photos are in S3."""
        return [
            p for name in NAMES for p in (self.workdir / name).rglob("blobs/**/*") if p.is_file()
        ]


def haproxy_missing() -> bool:
    return shutil.which("haproxy") is None
