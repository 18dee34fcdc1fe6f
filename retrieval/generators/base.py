"""What every generator promises: a prompt in, text (whole or streamed) out."""

from __future__ import annotations

from collections.abc import Generator as _PythonGenerator
from dataclasses import dataclass
from typing import Protocol

from retrieval.config import GENERATOR_KINDS, GeneratorConfig
from retrieval.prompt import Prompt

__all__ = [
    "GENERATOR_KINDS",
    "Generation",
    "GenerationOptions",
    "Generator",
    "GeneratorConfig",
    "Stream",
    "Usage",
]


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy decoding
    # Keeps a generation server's prompt cache (vLLM's prefix caching) to requests with the
    # same salt: the service gives each end user their own, so that no tenant can tell from
    # its time to first token whether another's prompt prefix is cached. None: shared.
    cache_salt: str | None = None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Generation:
    text: str
    usage: Usage
    finish_reason: str  # "stop" | "length"


Stream = _PythonGenerator[str | Generation, None, None]
"""Text deltas, then exactly one Generation; ``close()`` it to stop generating early."""


class Generator(Protocol):
    """A multimodal LLM. Methods block: the service calls them from a worker thread."""

    name: str  # "transformers" | "openai" | "echo" | "none"
    model: str
    # Whether it has generate_with_tools and stream_with_tools (see generators/tools.py).
    supports_tools: bool

    def generate(self, prompt: Prompt, options: GenerationOptions) -> Generation:
        """The whole answer. Raises GeneratorUnavailable (or GeneratorTimeout)."""
        ...

    def stream(self, prompt: Prompt, options: GenerationOptions) -> Stream:
        """Text deltas as they come, then exactly one Generation with the whole text.

        Closing the stream early stops the generation.
        """
        ...

    def close(self) -> None:
        """Release the model or the connections."""
        ...
