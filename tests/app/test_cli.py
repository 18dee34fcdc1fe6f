"""The rapport command as an operator runs it: real processes, real files."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests import factories
from tests.app.processes import ServeProcess, free_port, rapport_env, run_cli


def test_keys_create_prints_the_key_alone_and_revoke_works(tmp_path: Path) -> None:
    env = rapport_env(tmp_path / "data")
    assert run_cli(["db", "upgrade"], env).returncode == 0
    created = run_cli(["keys", "create", "--tenant", "acme"], env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n" and key.startswith("rk_")
    revoked = run_cli(["keys", "revoke", key.split("_")[1]], env)
    assert revoked.returncode == 0, revoked.stderr
    again = run_cli(["keys", "revoke", key], env)
    assert again.returncode != 0 and "no live key" in again.stderr
    expiring = run_cli(["keys", "create", "--tenant", "acme", "--expires-in", "90d"], env)
    assert expiring.returncode == 0 and expiring.stdout.startswith("rk_")
    bad = run_cli(["keys", "create", "--tenant", "acme", "--expires-in", "soon"], env)
    assert bad.returncode != 0 and "90d" in bad.stderr


def test_serve_fails_at_start_with_one_clear_message_for_missing_weights(tmp_path: Path) -> None:
    env = rapport_env(
        tmp_path / "data",
        RAPPORT_CLIP_MODEL="ViT-B-32",
        RAPPORT_CLIP_PRETRAINED="/no/such/file.bin",
    )
    result = run_cli(["serve", "--port", str(free_port())], env)
    assert result.returncode == 2
    assert "error: weights file '/no/such/file.bin' does not exist" in result.stderr
    assert "RAPPORT_CLIP_PRETRAINED" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_runs_the_readme_flow(tmp_path: Path) -> None:
    env = rapport_env(tmp_path / "data")
    server = ServeProcess(env, tmp_path / "serve.log").wait_ready()
    try:
        key = run_cli(["keys", "create", "--tenant", "acme"], env).stdout.strip()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.url, headers=headers) as client:
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
        server.stop()
    assert server.process.returncode == 0
    assert (tmp_path / "data" / "rapport.db").is_file()
    log = server.log.read_text()
    assert '"POST /v1/users/alice/retrieve HTTP/1.1" 200' in log
    # A short start-up log that says what runs where, and nothing that looks like an error.
    data = tmp_path / "data"
    assert f"serve: data folder {data}, database sqlite:///{data}/rapport.db" in log
    assert "encoder rapport-test-tiny:none on cpu, regions whole, generator none" in log
    assert f"photos in {data}/blobs" in log
    assert f"Uvicorn running on {server.url}" in log
    for noise in ("ModuleNotFoundError", "alembic", "Traceback", "Parsing model identifier"):
        assert noise not in log
    assert len(log.split("Application startup complete")[0].splitlines()) <= 13
    # The start-up heap (torch, open_clip, the app) is kept out of full collections.
    frozen = re.search(r"kept (\d+) start-up objects out of garbage collection", log)
    assert frozen and int(frozen.group(1)) > 100_000


def test_serve_without_access_log_on_one_torch_thread(tmp_path: Path) -> None:
    env = rapport_env(tmp_path / "data", RAPPORT_ACCESS_LOG="false", RAPPORT_TORCH_THREADS="1")
    server = ServeProcess(env, tmp_path / "serve.log").wait_ready()
    try:
        key = run_cli(["keys", "create", "--tenant", "acme"], env).stdout.strip()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.url, headers=headers) as client:
            found = client.post(
                "/v1/users/alice/retrieve", files={"image": ("q.jpg", factories.photo("dog", 1))}
            )
            assert found.status_code == 200 and found.json()["matches"] == []
    finally:
        server.stop()
    log = server.log.read_text()
    assert "Application startup complete" in log  # uvicorn's own log still runs
    assert "/v1/users/alice/retrieve" not in log


def test_settings_prints_the_reference_the_docs_hold(tmp_path: Path) -> None:
    result = run_cli(["settings"], rapport_env(tmp_path / "data"))
    assert result.returncode == 0, result.stderr
    reference = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert result.stdout == reference.read_text()
    assert not (tmp_path / "data").exists()
