"""Any OpenAI-compatible chat server (vLLM, SGLang, llama.cpp, OpenAI) as the generator."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from retrieval.config import GeneratorConfig
from retrieval.errors import GeneratorTimeout, GeneratorUnavailable, ModelLoadError
from retrieval.generators.base import Generation, GenerationOptions, Stream, Usage
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
        body = self._body(prompt, options, stream=False)
        with self._errors():
            response = self._client.post("chat/completions", json=body)
            _check_status(response.status_code, response.text)
        try:
            answer = response.json()
            choice = answer["choices"][0]
            text = choice["message"].get("content") or ""
            if not isinstance(text, str):
                raise TypeError("content is not a string")
        except (ValueError, LookupError, TypeError, AttributeError) as error:
            raise GeneratorUnavailable(
                f"the generator backend sent a malformed answer ({type(error).__name__})"
            ) from error
        return Generation(
            text=text, usage=_usage(answer.get("usage")), finish_reason=_finish(choice)
        )

    def stream(self, prompt: Prompt, options: GenerationOptions) -> Stream:
        body = self._body(prompt, options, stream=True)
        pieces: list[str] = []
        usage, finish = Usage(0, 0), "stop"
        with self._errors(), self._client.stream("POST", "chat/completions", json=body) as response:
            if response.status_code >= 400:
                _check_status(response.status_code, response.read().decode(errors="replace"))
            for data in _sse_data(response.iter_lines()):
                if data == "[DONE]":
                    yield Generation(text="".join(pieces), usage=usage, finish_reason=finish)
                    return
                chunk = _json_object(data)
                if chunk.get("error"):
                    raise GeneratorUnavailable("the generator backend failed while streaming")
                if chunk.get("usage"):
                    usage = _usage(chunk["usage"])
                for choice in chunk.get("choices") or []:
                    if choice.get("finish_reason"):
                        finish = _finish(choice)
                    piece = (choice.get("delta") or {}).get("content")
                    if isinstance(piece, str) and piece:
                        pieces.append(piece)
                        yield piece
        raise GeneratorUnavailable("the generator backend ended its stream before [DONE]")

    def close(self) -> None:
        self._client.close()

    def _body(self, prompt: Prompt, options: GenerationOptions, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": to_openai_messages(prompt, image_max_side=self._image_max_side),
            "max_tokens": options.max_new_tokens,
            "temperature": options.temperature,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if options.cache_salt is not None:
            body["cache_salt"] = options.cache_salt  # vLLM's field; others ignore it
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
