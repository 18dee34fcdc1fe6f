"""How every ``rapport`` command starts: where its data is, a current schema, one-line errors."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tests.app.processes import free_port, messages, rapport_env, run_cli


def test_keys_from_a_fresh_folder_migrate_first_and_say_which_data_they_use(
    tmp_path: Path,
) -> None:
    env = rapport_env(tmp_path)
    del env["RAPPORT_DATA_DIR"]  # the default: ./rapport-data, relative to the current folder

    created = run_cli(["keys", "create", "--tenant", "acme"], env, cwd=tmp_path)

    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n" and key.startswith("rk_")
    data = tmp_path / "rapport-data"
    assert f"data folder {data}, database sqlite:///{data}/rapport.db" in created.stderr
    assert "Traceback" not in created.stderr and "alembic" not in created.stderr
    listed = run_cli(["keys", "list", "--tenant", "acme"], env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["prefix", "created", "expires", "revoked"]
    assert row.split()[0] == key.split("_")[1] and row.endswith("-")
    assert key.split("_")[2] not in listed.stdout
    unknown = run_cli(["keys", "list", "--tenant", "nobody"], env, cwd=tmp_path)
    assert unknown.returncode == 1 and "no tenant named 'nobody'" in unknown.stderr


def test_an_unreachable_database_is_one_line_exit_2_and_leaves_no_data_folder(
    tmp_path: Path,
) -> None:
    url = f"postgresql+psycopg://rapport:hunter2@127.0.0.1:{free_port()}/rapport"
    env = rapport_env(tmp_path / "data", RAPPORT_DATABASE_URL=url)
    del env["RAPPORT_DATA_DIR"]

    for command in (["keys", "create", "--tenant", "acme"], ["db", "upgrade"], ["doctor"]):
        result = run_cli(command, env, cwd=tmp_path)

        assert result.returncode == 2, result.stderr
        [line] = messages(result.stderr)
        assert line.startswith("error: cannot use RAPPORT_DATABASE_URL=postgresql+psycopg://")
        assert "rapport:***@127.0.0.1" in line and "Connection refused" in line
        assert "hunter2" not in result.stderr and "Traceback" not in result.stderr
        assert list(tmp_path.iterdir()) == [], "a failed command leaves nothing behind"


def test_serve_with_a_missing_postgres_database_is_one_line(
    postgres_url: str, tmp_path: Path
) -> None:
    missing = postgres_url.rsplit("/", 1)[0] + "/rapport_no_such_database"
    env = rapport_env(tmp_path / "data", RAPPORT_DATABASE_URL=missing)

    result = run_cli(["serve", "--port", str(free_port())], env)

    assert result.returncode == 2
    [line] = messages(result.stderr)
    assert 'database "rapport_no_such_database" does not exist' in line
    assert line.startswith("error: cannot use RAPPORT_DATABASE_URL=")


def test_serve_without_migrating_refuses_an_old_schema(tmp_path: Path) -> None:
    env = rapport_env(tmp_path / "data")

    result = run_cli(["serve", "--no-migrate", "--port", str(free_port())], env)

    assert result.returncode == 2
    [line] = messages(result.stderr)
    assert "schema is at revision none" in line and "run `rapport db upgrade`" in line


def test_bad_settings_name_their_variable(tmp_path: Path) -> None:
    env = rapport_env(tmp_path / "data", RAPPORT_DEFAULT_TOP_K="abc")

    result = run_cli(["keys", "create", "--tenant", "acme"], env)

    assert result.returncode == 2
    [line] = messages(result.stderr)
    assert line.startswith("error: invalid configuration: RAPPORT_DEFAULT_TOP_K: ")
    assert not (tmp_path / "data").exists()


def test_version(tmp_path: Path) -> None:
    result = run_cli(["--version"], rapport_env(tmp_path))
    assert result.returncode == 0
    assert result.stdout.startswith("rapport, version ") and result.stdout.split()[-1][0].isdigit()


def test_serve_offline_without_cached_weights_fails_in_seconds_in_one_line(
    tmp_path: Path,
) -> None:
    # The default weights, an empty model cache, and a hub that refuses connections.
    env = rapport_env(
        tmp_path / "data",
        RAPPORT_CLIP_MODEL="ViT-B-32",
        RAPPORT_CLIP_PRETRAINED="laion2b_s34b_b79k",
        HF_HOME=str(tmp_path / "hf"),
        HF_ENDPOINT=f"http://127.0.0.1:{free_port()}",
    )
    env.pop("HF_HUB_OFFLINE", None)

    result = run_cli(["serve", "--port", str(free_port())], env)
    ended = datetime.now()

    assert result.returncode == 2
    [line] = messages(result.stderr)
    assert "weights 'laion2b_s34b_b79k' for ViT-B-32" in line
    assert "cannot be reached" in line and "RAPPORT_CLIP_PRETRAINED" in line
    assert "Retrying" not in result.stderr and "thrown while requesting" not in result.stderr
    # From the start-up line (after Python and torch have loaded) to the exit: the hub is
    # asked once, for 3 s at most, instead of a minute of retries.
    started = datetime.strptime(result.stderr[:23], "%Y-%m-%d %H:%M:%S,%f")
    assert (ended - started).total_seconds() < 15, result.stderr
    offline = run_cli(
        ["serve", "--port", str(free_port())],
        env
        | {"HF_HUB_OFFLINE": "1", "RAPPORT_REGIONS": "detector"}
        | {"RAPPORT_CLIP_MODEL": "rapport-test-tiny", "RAPPORT_CLIP_PRETRAINED": "none"},
    )
    assert offline.returncode == 2
    [line] = messages(offline.stderr)
    assert "region detector 'google/owlv2-base-patch16-ensemble'" in line
    assert "HF_HUB_OFFLINE is set" in line


def test_reindex_says_which_settings_it_used(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run_cli(["reindex"], rapport_env(data))

    assert result.returncode == 0, result.stderr
    assert (
        f"using data folder {data}, database sqlite:///{data}/rapport.db, "
        "model open_clip:rapport-test-tiny:none"
    ) in result.stderr
    assert "embedded 0 photos with rapport-test-tiny:none" in result.stderr


def test_a_misspelt_setting_is_named_with_the_nearest_one(tmp_path: Path) -> None:
    env = rapport_env(tmp_path / "data", RAPPORT_DEFAULT_TOPK="3", RAPPORT_NO_SUCH_THING="1")

    result = run_cli(["keys", "create", "--tenant", "acme"], env)

    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "not a rapport setting" in line]
    assert len(warnings) == 2, result.stderr
    assert (
        "RAPPORT_DEFAULT_TOPK" in warnings[0]
        and "did you mean RAPPORT_DEFAULT_TOP_K?" in warnings[0]
    )
    assert "RAPPORT_NO_SUCH_THING" in warnings[1] and "did you mean" not in warnings[1]
