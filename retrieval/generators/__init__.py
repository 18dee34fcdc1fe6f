"""Multimodal LLMs that answer a built prompt: in-process transformers, an
OpenAI-compatible server, or none. ``open_generator`` builds the configured one.
"""

from __future__ import annotations

from retrieval.errors import ModelLoadError
from retrieval.generators.base import (
    GENERATOR_KINDS,
    Generation,
    GenerationOptions,
    Generator,
    GeneratorConfig,
    Stream,
    Usage,
)
from retrieval.generators.none_generator import NoneGenerator
from retrieval.generators.tools import ToolCall, ToolSession

__all__ = [
    "GENERATOR_KINDS",
    "Generation",
    "GenerationOptions",
    "Generator",
    "GeneratorConfig",
    "NoneGenerator",
    "Stream",
    "ToolCall",
    "ToolSession",
    "Usage",
    "open_generator",
]


def open_generator(config: GeneratorConfig) -> Generator:
    """The generator ``config`` describes, ready to use; raises ModelLoadError saying why not."""
    # Imported here: torch and transformers load in seconds, and only one kind is used.
    if config.kind == "transformers":
        from retrieval.generators.transformers_generator import TransformersGenerator

        return TransformersGenerator.from_config(config)
    if config.kind == "openai":
        from retrieval.generators.openai_generator import OpenAIGenerator

        return OpenAIGenerator.from_config(config)
    if config.kind == "none":
        return NoneGenerator()
    raise ModelLoadError(
        f"unknown generator kind {config.kind!r}; known: {', '.join(GENERATOR_KINDS)}"
    )
