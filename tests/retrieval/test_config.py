"""retrieval.config and the light modules load without torch or FAISS."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import FrozenInstanceError, fields, is_dataclass
from typing import get_args

import pytest

from retrieval import config

LIGHT_MODULES = ("retrieval.config", "retrieval.prompt", "retrieval.names", "retrieval.images")


def test_light_modules_load_neither_torch_nor_faiss() -> None:
    probe = (
        "import importlib, json, sys\n"
        f"for name in {LIGHT_MODULES!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in ('torch', 'faiss') if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == []


def test_settings_load_without_torch() -> None:
    probe = "import sys, app.settings; print('torch' in sys.modules, 'faiss' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    "config_class",
    [
        config.BatchingConfig,
        config.EncoderConfig,
        config.GeneratorConfig,
        config.ImageLimits,
        config.PromptConfig,
        config.RegionConfig,
    ],
)
def test_configs_are_frozen(config_class: type) -> None:
    assert is_dataclass(config_class)
    instance = config_class()
    with pytest.raises(FrozenInstanceError):
        setattr(instance, fields(config_class)[0].name, None)


def test_generator_kinds_are_the_literal() -> None:
    kinds = ("transformers", "openai", "echo", "none")
    assert config.GENERATOR_KINDS == get_args(config.GeneratorKind) == kinds


def test_check_device_names_the_valid_devices() -> None:
    assert [config.check_device(d) for d in ("auto", "cpu", "cuda", "cuda:1")] == [
        "auto",
        "cpu",
        "cuda",
        "cuda:1",
    ]
    with pytest.raises(ValueError, match="device must be auto, cpu or cuda"):
        config.check_device("tpu")
