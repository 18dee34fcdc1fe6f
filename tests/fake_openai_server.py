"""A real OpenAI-compatible /v1/chat/completions server on loopback, for tests.

It answers with ``reply`` (split into ``deltas`` when streaming), records every
request body, and can misbehave on purpose (``behaviour``):

- ``"ok"``: answer normally (JSON, or SSE when the request asks to stream);
- ``"error"``: answer 500 with a body that tests check never reaches clients;
- ``"hang"``: wait, sending nothing, until ``release`` is set (at ``stop()``);
- ``"close"``: close the connection without answering;
- ``"cut"``: close half-way through the answer (streaming: after one delta, without ``[DONE]``);
- ``"garbage"``: answer 200 with a body that is not JSON (an event that is not, when streaming).

Scripted conversations: each reply queued with ``say`` (text) or ``call`` (tool calls,
as a model makes them) answers one request, in order, whole or streamed; a streamed
call arrives in pieces (name, then its arguments in two halves), as vLLM sends them.
With ``hold_calls`` set, a stream sends its text, sets ``holding`` and waits for
``release_calls`` before sending its calls (a client may leave meanwhile).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Literal

Behaviour = Literal["ok", "error", "hang", "close", "cut", "garbage"]
SECRET_BODY = "backend internals: stack trace at /srv/secret/model.py line 42"
HANG_LIMIT_S = 30.0  # a safety net only: tests release hung handlers at teardown


class FakeOpenAI:
    """The server's state, shared with its handler threads."""

    def __init__(self, *, deltas: tuple[str, ...] = ("Hello ", "<bo>", "!")) -> None:
        self.deltas = deltas
        self.behaviour: Behaviour = "ok"
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.release = threading.Event()
        self.received = threading.Event()  # set once a request has been recorded
        self.script: list[dict[str, Any]] = []
        self.hold_calls = False
        self.holding = threading.Event()
        self.release_calls = threading.Event()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def reply(self) -> str:
        return "".join(self.deltas)

    @property
    def base_url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.release_calls.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def record(self, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any] | None:
        """Record the request; the scripted reply it gets (None: the default reply)."""
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            reply = self.script.pop(0) if self.script else None
            self._arrived.notify_all()
        self.received.set()
        return reply

    def wait_for_requests(self, count: int, *, timeout: float) -> bool:
        """Whether ``count`` requests have arrived within ``timeout`` seconds."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.requests) >= count, timeout)

    def say(self, text: str) -> FakeOpenAI:
        """Queue a reply in words."""
        self.script.append({"content": text, "tool_calls": []})
        return self

    def call(self, *calls: tuple[str, Any], text: str = "") -> FakeOpenAI:
        """Queue a reply that calls tools: (name, arguments) each, arguments as a dict
        (sent as JSON) or a string (sent as is, malformed if need be)."""
        made = [
            {
                "id": f"call_{len(self.script)}_{n}",
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
            for n, (name, arguments) in enumerate(calls)
        ]
        self.script.append({"content": text or None, "tool_calls": made})
        return self


@contextmanager
def running_fake_openai(**kwargs: Any) -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()


def _handler_for(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(_ChatCompletions):
        state: ClassVar[FakeOpenAI] = fake

    return Handler


class _ChatCompletions(BaseHTTPRequestHandler):
    state: ClassVar[FakeOpenAI]
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        reply = self.state.record(body, dict(self.headers.items()))
        if reply is not None:
            self._scripted(body, reply)
            return
        behaviour = self.state.behaviour
        if behaviour == "error":
            self._send_json(500, {"error": {"message": SECRET_BODY}})
        elif behaviour == "hang":
            self.state.release.wait(HANG_LIMIT_S)
            self.close_connection = True
        elif behaviour == "close":
            self.close_connection = True
        elif body.get("stream"):
            self._stream(body)
        elif behaviour == "garbage":
            self._send(200, "text/html", b"<html>502 Bad Gateway</html>")
        elif behaviour == "cut":
            data = json.dumps(self._completion()).encode()
            self._send(200, "application/json", data, stop_at=len(data) // 2)
        else:
            self._send_json(200, self._completion())

    def _completion(self) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": "fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.state.reply},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": len(self.state.deltas)},
        }

    def _stream(self, body: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        deltas = self.state.deltas
        if self.state.behaviour in ("cut", "garbage"):
            deltas = deltas[:1]
        for index, delta in enumerate(deltas):
            finish = "stop" if index == len(self.state.deltas) - 1 else None
            self._event(
                {"choices": [{"index": 0, "delta": {"content": delta}, "finish_reason": finish}]}
            )
        if self.state.behaviour == "cut":
            return
        if self.state.behaviour == "garbage":
            self.wfile.write(b"data: {not json\n\n")
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 11, "completion_tokens": len(deltas)}
            self._event({"choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _scripted(self, body: dict[str, Any], reply: dict[str, Any]) -> None:
        calls = reply["tool_calls"]
        finish = "tool_calls" if calls else "stop"
        if not body.get("stream"):
            message = {"role": "assistant", "content": reply["content"]}
            if calls:
                message["tool_calls"] = calls
            answer = {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "model": "fake",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 3},
            }
            self._send_json(200, answer)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if reply["content"]:
            self._event({"choices": [{"index": 0, "delta": {"content": reply["content"]}}]})
        if calls and self.state.hold_calls:
            self.state.holding.set()
            self.state.release_calls.wait(HANG_LIMIT_S)
        for index, call in enumerate(calls):
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            head = {"index": index, "id": call["id"], "type": "function"}
            pieces = [
                {**head, "function": {"name": call["function"]["name"], "arguments": ""}},
                {"index": index, "function": {"arguments": arguments[:half]}},
                {"index": index, "function": {"arguments": arguments[half:]}},
            ]
            for piece in pieces:
                self._event({"choices": [{"index": 0, "delta": {"tool_calls": [piece]}}]})
        self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        self._event({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 3}})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _event(self, payload: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        self.wfile.flush()

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, "application/json", json.dumps(payload).encode())

    def _send(self, status: int, content_type: str, data: bytes, *, stop_at: int = -1) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if stop_at >= 0:
            self.close_connection = True
            data = data[:stop_at]
        self.wfile.write(data)
