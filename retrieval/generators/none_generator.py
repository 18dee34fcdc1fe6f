"""No multimodal LLM: the service answers with the prompt it built instead."""

from __future__ import annotations

from retrieval.generators.base import Generation, GenerationOptions, Stream, Usage
from retrieval.prompt import Prompt


class NoneGenerator:
    """Answers every prompt with empty text."""

    name = "none"
    supports_tools = False  # answers memory "read" only: no tool calling in process
    model = ""

    def generate(self, prompt: Prompt, options: GenerationOptions) -> Generation:
        return Generation(
            text="", usage=Usage(prompt_tokens=0, completion_tokens=0), finish_reason="stop"
        )

    def stream(self, prompt: Prompt, options: GenerationOptions) -> Stream:
        yield self.generate(prompt, options)

    def close(self) -> None:
        pass
