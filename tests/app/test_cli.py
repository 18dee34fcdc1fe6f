"""The rapport command as an operator runs it: real processes, real files."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests import factories

RAPPORT = [sys.executable, "-m", "app"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPPORT_")}
    env.update(
        {
            "RAPPORT_DATA_DIR": str(tmp_path / "data"),
            "RAPPORT_CLIP_MODEL": "rapport-test-tiny",
            "RAPPORT_CLIP_PRETRAINED": "none",
        }
        | extra
    )
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(RAPPORT + args, env=env, capture_output=True, text=True, timeout=120)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_keys_create_prints_the_key_alone_and_revoke_works(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert _run(["db", "upgrade"], env).returncode == 0
    created = _run(["keys", "create", "--tenant", "acme"], env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n" and key.startswith("rk_")
    revoked = _run(["keys", "revoke", key.split("_")[1]], env)
    assert revoked.returncode == 0, revoked.stderr
    again = _run(["keys", "revoke", key], env)
    assert again.returncode != 0 and "no live key" in again.stderr


def test_serve_fails_at_start_with_one_clear_message_for_missing_weights(tmp_path: Path) -> None:
    env = _env(tmp_path, RAPPORT_CLIP_MODEL="ViT-B-32", RAPPORT_CLIP_PRETRAINED="/no/such/file.bin")
    result = _run(["serve", "--port", str(_free_port())], env)
    assert result.returncode == 2
    assert "error: weights file '/no/such/file.bin' does not exist" in result.stderr
    assert "RAPPORT_CLIP_PRETRAINED" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_runs_the_readme_flow(tmp_path: Path) -> None:
    env = _env(tmp_path)
    port = _free_port()
    server = subprocess.Popen(
        [*RAPPORT, "serve", "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail("server did not become ready")
                time.sleep(0.1)
        key = _run(["keys", "create", "--tenant", "acme"], env).stdout.strip()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
            files = [("images", (f"{i}.jpg", factories.photo("dog", i))) for i in range(3)]
            created = client.post("/v1/users/alice/concepts", data={"name": "<bo>"}, files=files)
            assert created.status_code == 201, created.text
            found = client.post(
                "/v1/users/alice/retrieve",
                files={"image": ("q.jpg", factories.photo("dog", 1))},
                data={"min_score": "0.999"},
            )
            assert [m["concept"]["name"] for m in found.json()["matches"]] == ["<bo>"]
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
        if server.stderr:
            server.stderr.close()
    assert (tmp_path / "data" / "rapport.db").is_file()
