"""Any OpenAI-compatible chat server (vLLM, SGLang, llama.cpp, OpenAI) as the generator."""

from __future__ import annotations

import json
import logging
from collections.abc import Generator as _PythonGenerator
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from retrieval.config import GeneratorConfig
from retrieval.errors import GeneratorTimeout, GeneratorUnavailable, ModelLoadError
from retrieval.generators.base import Generation, GenerationOptions, Stream, Usage
from retrieval.generators.tools import ToolSession
from retrieval.prompt import Prompt, to_openai_messages

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
LOGGED_BODY_CHARS = 500


class OpenAIGenerator:
    """POSTs prompts to ``{base_url}/chat/completions`` over one pooled HTTP client.

    Every failure of the backend becomes GeneratorUnavailable, or GeneratorTimeout
    when it does not connect, answer or send the next bytes within ``timeout_s``.
    """

    name = "openai"
    supports_tools = True

    def __init__(self, *, client: httpx.Client, model: str, image_max_side: int) -> None:
        self._client = client
        self.model = model
        self._image_max_side = image_max_side

    @classmethod
    def from_config(cls, config: GeneratorConfig) -> OpenAIGenerator:
        """A client for the server; connects lazily. Raises ModelLoadError on a bad config."""
        if not config.base_url:
            raise ModelLoadError(
                "the openai generator needs base_url, e.g. http://127.0.0.1:8001/v1"
            )
        if not config.model:
            raise ModelLoadError("the openai generator needs the name of the served model")
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        timeout = httpx.Timeout(config.timeout_s, connect=min(CONNECT_TIMEOUT_S, config.timeout_s))
        client = httpx.Client(
            base_url=config.base_url.rstrip("/") + "/", headers=headers, timeout=timeout
        )
        return cls(client=client, model=config.model, image_max_side=config.image_max_side)

    def generate(self, prompt: Prompt, options: GenerationOptions) -> Generation:
        generation, _ = self._complete(self._messages(prompt), options, tools=None)
        return generation

    def generate_with_tools(
        self, prompt: Prompt, options: GenerationOptions, tools: ToolSession
    ) -> Generation:
        """The whole answer, after the tool calls the model makes (see ToolSession)."""
        messages = self._messages(prompt)
        prompt_tokens = completion_tokens = 0
        while True:
            offered = tools if tools.has_room() else None
            generation, calls = self._complete(messages, options, tools=offered)
            prompt_tokens += generation.usage.prompt_tokens
            completion_tokens += generation.usage.completion_tokens
            if not calls or offered is None:
                return Generation(
                    generation.text,
                    Usage(prompt_tokens, completion_tokens),
                    generation.finish_reason,
                )
            messages += _tool_round(generation.text, calls, tools)

    def stream(self, prompt: Prompt, options: GenerationOptions) -> Stream:
        messages = self._messages(prompt)
        generation = yield from self._stream_round(messages, options, tools=None)
        yield generation[0]

    def stream_with_tools(
        self, prompt: Prompt, options: GenerationOptions, tools: ToolSession
    ) -> Stream:
        """Deltas of every round as they come, the tools run between rounds, then one
        Generation with the whole text."""
        messages = self._messages(prompt)
        pieces: list[str] = []
        prompt_tokens = completion_tokens = 0
        while True:
            offered = tools if tools.has_room() else None
            generation, calls = yield from self._stream_round(messages, options, tools=offered)
            pieces.append(generation.text)
            prompt_tokens += generation.usage.prompt_tokens
            completion_tokens += generation.usage.completion_tokens
            if not calls or offered is None:
                usage = Usage(prompt_tokens, completion_tokens)
                yield Generation("".join(pieces), usage, generation.finish_reason)
                return
            messages += _tool_round(generation.text, calls, tools)

    def _complete(
        self,
        messages: list[dict[str, Any]],
        options: GenerationOptions,
        *,
        tools: ToolSession | None,
    ) -> tuple[Generation, list[Any]]:
        body = self._body(messages, options, stream=False, tools=tools)
        with self._errors():
            response = self._client.post("chat/completions", json=body)
            _check_status(response.status_code, response.text)
        try:
            answer = response.json()
            choice = answer["choices"][0]
            text = choice["message"].get("content") or ""
            if not isinstance(text, str):
                raise TypeError("content is not a string")
            calls = choice["message"].get("tool_calls") or []
            if not isinstance(calls, list):
                raise TypeError("tool_calls is not a list")
        except (ValueError, LookupError, TypeError, AttributeError) as error:
            raise GeneratorUnavailable(
                f"the generator backend sent a malformed answer ({type(error).__name__})"
            ) from error
        generation = Generation(
            text=text, usage=_usage(answer.get("usage")), finish_reason=_finish(choice)
        )
        return generation, calls

    def _stream_round(
        self,
        messages: list[dict[str, Any]],
        options: GenerationOptions,
        *,
        tools: ToolSession | None,
    ) -> _PythonGenerator[str, None, tuple[Generation, list[Any]]]:
        """Yield one request's deltas; return its Generation and the tool calls it made
        (assembled from their streamed pieces)."""
        body = self._body(messages, options, stream=True, tools=tools)
        pieces: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        usage, finish = Usage(0, 0), "stop"
        with self._errors(), self._client.stream("POST", "chat/completions", json=body) as response:
            if response.status_code >= 400:
                _check_status(response.status_code, response.read().decode(errors="replace"))
            for data in _sse_data(response.iter_lines()):
                if data == "[DONE]":
                    text = "".join(pieces)
                    ordered = [calls[index] for index in sorted(calls)]
                    return Generation(text=text, usage=usage, finish_reason=finish), ordered
                chunk = _json_object(data)
                if chunk.get("error"):
                    raise GeneratorUnavailable("the generator backend failed while streaming")
                if chunk.get("usage"):
                    usage = _usage(chunk["usage"])
                for choice in chunk.get("choices") or []:
                    if choice.get("finish_reason"):
                        finish = _finish(choice)
                    delta = choice.get("delta") or {}
                    _merge_calls(calls, delta.get("tool_calls"))
                    piece = delta.get("content")
                    if isinstance(piece, str) and piece:
                        pieces.append(piece)
                        yield piece
        raise GeneratorUnavailable("the generator backend ended its stream before [DONE]")

    def close(self) -> None:
        self._client.close()

    def _messages(self, prompt: Prompt) -> list[dict[str, Any]]:
        return to_openai_messages(prompt, image_max_side=self._image_max_side)

    def _body(
        self,
        messages: list[dict[str, Any]],
        options: GenerationOptions,
        *,
        stream: bool,
        tools: ToolSession | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": options.max_new_tokens,
            "temperature": options.temperature,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if options.cache_salt is not None:
            body["cache_salt"] = options.cache_salt  # vLLM's field; others ignore it
        if tools is not None:
            body["tools"] = list(tools.specs)
        return body

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException as error:
            raise GeneratorTimeout(
                f"the generator backend did not answer in time ({type(error).__name__})"
            ) from error
        except httpx.HTTPError as error:
            raise GeneratorUnavailable(
                f"could not reach the generator backend ({type(error).__name__})"
            ) from error


def _tool_round(text: str, calls: list[Any], tools: ToolSession) -> list[dict[str, Any]]:
    """The assistant's turn with its calls, and one tool message answering each."""
    answered = [tools.run(call) for call in calls]
    sent = [call for call in calls if isinstance(call, dict)]
    turn: dict[str, Any] = {"role": "assistant", "content": text or None, "tool_calls": sent}
    results = [
        {"role": "tool", "tool_call_id": call_id, "content": result} for call_id, result in answered
    ]
    return [turn, *results]


def _merge_calls(calls: dict[int, dict[str, Any]], pieces: Any) -> None:
    """Add a stream delta's pieces of tool calls (by ``index``) to ``calls``."""
    if not isinstance(pieces, list):
        return
    for piece in pieces:
        if not isinstance(piece, dict):
            continue
        index = piece.get("index", 0)
        call = calls.setdefault(
            index if isinstance(index, int) else 0,
            {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
        )
        if piece.get("id"):
            call["id"] = str(piece["id"])
        function = piece.get("function")
        if isinstance(function, dict):
            for key in ("name", "arguments"):
                if isinstance(function.get(key), str):
                    call["function"][key] += function[key]


def _check_status(status: int, body: str) -> None:
    if status < 400:
        return
    # The body may hold the backend's internals: operators get it in the log, clients don't.
    logger.warning("generator backend answered %d: %s", status, body[:LOGGED_BODY_CHARS])
    phrase = httpx.codes.get_reason_phrase(status)
    raise GeneratorUnavailable(f"the generator backend answered HTTP {status} {phrase}".rstrip())


def _sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The payloads of an event stream's ``data:`` fields (one event per line, as servers send)."""
    for line in lines:
        if line.startswith("data:"):
            yield line[5:].strip()


def _json_object(data: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as error:
        raise GeneratorUnavailable("the generator backend sent a malformed stream event") from error
    if not isinstance(value, dict):
        raise GeneratorUnavailable("the generator backend sent a malformed stream event")
    return value


def _usage(usage: Any) -> Usage:
    try:
        return Usage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
    except (AttributeError, TypeError, ValueError):
        return Usage(prompt_tokens=0, completion_tokens=0)


def _finish(choice: dict[str, Any]) -> str:
    return "length" if choice.get("finish_reason") == "length" else "stop"
