"""Not a model: an answer made from what the prompt holds, for development and demos.

An app can be built end to end against it (both chat APIs, streaming, the console's
Ask button) before an MLLM server exists. It never looks at a photo: it says which
concepts rapport put into the prompt (with their descriptions), how many photos came,
and the question, in one deterministic paragraph.
"""

from __future__ import annotations

import re

from retrieval.generators.base import Generation, GenerationOptions, Stream, Usage
from retrieval.prompt import ImagePart, Prompt, TextPart

MODEL = "echo"
# A delta is a word with the spaces after it: streams look like a model's.
_WORDS = re.compile(r"\S+\s*")


def echo_answer(prompt: Prompt) -> str:
    """What the echo generator says about ``prompt``: the concepts, the photos, the question."""
    question = _question(prompt)
    photos = sum(
        isinstance(part, ImagePart)
        for message in prompt.messages
        if message.role == "user"
        for part in message.parts
    )
    photos -= sum(len(concept.reference_images) for concept in prompt.concepts)
    if prompt.concepts:
        found = "; ".join(
            f"{c.name} ({c.description})" if c.description else c.name for c in prompt.concepts
        )
        seen = f"Your concepts in this prompt: {found}."
    else:
        seen = "None of your concepts is in this prompt."
    photo = {0: "no photo", 1: "1 photo"}.get(max(photos, 0), f"{photos} photos")
    return f'[echo, not a model] You asked "{question}", with {photo}. {seen}'


def _question(prompt: Prompt) -> str:
    """The last user message's last text: the question, after the concepts' blocks."""
    for message in reversed(prompt.messages):
        if message.role == "user":
            texts = [part.text for part in message.parts if isinstance(part, TextPart)]
            return texts[-1].strip() if texts else ""
    return ""


class EchoGenerator:
    """Answers every prompt with ``echo_answer``, whole or word by word."""

    name = "echo"
    model = MODEL
    supports_tools = False  # it calls no memory tool: memory "read" only

    def generate(self, prompt: Prompt, options: GenerationOptions) -> Generation:
        *_, generation = self.stream(prompt, options)
        assert not isinstance(generation, str)
        return generation

    def stream(self, prompt: Prompt, options: GenerationOptions) -> Stream:
        words = _WORDS.findall(echo_answer(prompt))
        kept = words[: options.max_new_tokens]
        yield from kept
        prompt_words = sum(
            len(_WORDS.findall(part.text))
            for message in prompt.messages
            for part in message.parts
            if isinstance(part, TextPart)
        )
        yield Generation(
            text="".join(kept),
            usage=Usage(prompt_tokens=prompt_words, completion_tokens=len(kept)),
            finish_reason="length" if len(kept) < len(words) else "stop",
        )

    def close(self) -> None:
        pass
