"""What every generator promises: a prompt in, text (whole or streamed) out."""

from __future__ import annotations

from collections.abc import Generator as _PythonGenerator
from dataclasses import dataclass
from typing import Literal, Protocol

from retrieval.prompt import Prompt

GENERATOR_KINDS = ("transformers", "openai", "none")


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy decoding


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


@dataclass(frozen=True)
class GeneratorConfig:
    """Which multimodal LLM answers, and where.

    ``kind``: ``"transformers"`` (in process; ``model`` is a Hugging Face id or a
    local directory), ``"openai"`` (any OpenAI-compatible server at ``base_url``,
    e.g. vLLM; ``model`` is the served model name) or ``"none"`` (no answer).
    ``device``: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:N]"``.
    ``dtype``: ``"auto"`` (bfloat16 on CUDA, float32 on CPU), ``"float32"``,
    ``"float16"`` or ``"bfloat16"``. ``timeout_s``: the longest wait for the
    backend to answer or send the next bytes of an answer.
    """

    kind: Literal["transformers", "openai", "none"] = "none"
    model: str = ""
    base_url: str = ""
    api_key: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    timeout_s: float = 60.0
    image_max_side: int = 1024


class Generator(Protocol):
    """A multimodal LLM. Methods block: the service calls them from a worker thread."""

    name: str  # "transformers" | "openai" | "none"
    model: str

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
