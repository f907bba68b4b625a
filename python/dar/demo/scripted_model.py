"""A scripted stand-in for the model providers, so the real SDK clients run offline: in the
tests of `dar.integrations` and in `dar demo --agent`.

It speaks just enough of four wire protocols for the official clients to parse its answers,
each also streamed as the real API streams it (server-sent events): OpenAI Chat Completions
(chunks with tool-call deltas, and a usage chunk when ``stream_options`` asks for one),
OpenAI Responses (typed events ending in ``response.completed``), Anthropic Messages
(``message_start`` ... ``message_stop``, tool input as JSON deltas) and Gemini
``generateContent`` (``streamGenerateContent``). The model's side of the
conversation is a script: a list of turns, each either tool calls or a final text. Every
request is answered with the next turn, and the script starts over when it runs out, so a
conversation can be run twice. Every request body is recorded, so a test can read back
what the model was sent (the tool results, a refusal's wording).

Run it on its own (``python -m dar.demo.scripted_model``) to point an example at it by hand.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class ToolCall:
    """One tool call of a model turn; ``arguments`` is the JSON text the model wrote (it
    may be broken: the protocols that carry arguments as objects cannot send that)."""

    name: str
    arguments: str

    def args(self) -> Any:
        return json.loads(self.arguments)


#: A model turn: the tool calls it makes, or its final answer.
Turn = Sequence[ToolCall] | str


@dataclass(frozen=True)
class Request:
    """A request the server received."""

    path: str
    body: dict[str, Any]


class ModelServer:
    """``with ModelServer(script) as server:`` serves on ``server.url`` until the block ends."""

    def __init__(self, script: Sequence[Turn]) -> None:
        self.script = list(script)
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._next = 0
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def __enter__(self) -> ModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()

    def bodies(self, endpoint: str) -> list[dict[str, Any]]:
        """The bodies of the requests whose path ends with ``endpoint``, in order."""
        return [r.body for r in self.requests if r.path.endswith(endpoint)]

    def take(self, path: str, body: dict[str, Any]) -> tuple[int, Turn]:
        """Record a request; return the turn that answers it and its place in the script
        (which names its call ids, so a replayed conversation gets the same ones)."""
        with self._lock:
            self.requests.append(Request(path, body))
            number = self._next % len(self.script)
            self._next += 1
        return number, self.script[number]

    def samples(self, number: int, count: int) -> list[Turn]:
        """A request's ``n`` sampled answers: the turn at ``number`` and the ``count - 1``
        after it, which the script moves past."""
        with self._lock:
            self._next += count - 1
        return [self.script[(number + i) % len(self.script)] for i in range(count)]


def _handler(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            path = self.path.split("?")[0]
            n = int(body.get("n") or 1) if path.endswith("/chat/completions") else 1
            number, turn = server.take(path, body)
            try:
                if n > 1 and not body.get("stream"):  # n samples: one choice per turn
                    content_type = "application/json"
                    payload = _json(chat_completion(number, turn, server.samples(number, n)))
                else:
                    content_type, payload = render(path, body, number, turn)
            except Exception as exc:  # a broken script: say so to the client, loudly
                content_type, payload = "text/plain", f"model server: {exc!r}".encode()
                self.send_response(500)
            else:
                self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the recorded requests are the log

    return Handler


def render(path: str, body: dict[str, Any], number: int, turn: Turn) -> tuple[str, bytes]:
    """A turn in the wire format of the endpoint that asked for it."""
    if path.endswith("/chat/completions"):
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return "text/event-stream", _sse(chat_chunks(number, turn, usage=usage))
        return "application/json", _json(chat_completion(number, turn))
    if path.endswith("/responses"):
        if body.get("stream"):
            return "text/event-stream", _sse(response_events(number, turn), named=True, done=False)
        return "application/json", _json(response(number, turn))
    if path.endswith("/messages"):
        if body.get("stream"):
            return "text/event-stream", _sse(anthropic_events(number, turn), named=True, done=False)
        return "application/json", _json(anthropic_message(number, turn))
    if re.search(r"/models/[^/]+:generateContent$", path):
        return "application/json", _json(gemini_response(number, turn))
    if re.search(r"/models/[^/]+:streamGenerateContent$", path):
        return "text/event-stream", _sse(gemini_chunks(number, turn), done=False)
    raise ValueError(f"no such endpoint: {path}")


def call_id(number: int, index: int) -> str:
    return f"call_{number}_{index}"


# --- OpenAI Chat Completions -------------------------------------------------------------------


def chat_completion(
    number: int, turn: Turn, choices: Sequence[Turn] | None = None
) -> dict[str, Any]:
    """A completion answering with ``turn``, or with one choice per turn of ``choices``
    (a request's ``n``)."""
    return {
        "id": f"chatcmpl-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "test-model",
        "choices": [_choice(number + k, k, t) for k, t in enumerate(choices or [turn])],
        "usage": _USAGE,
    }


def _choice(number: int, index: int, turn: Turn) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if isinstance(turn, str):
        message["content"] = turn
    else:
        message["tool_calls"] = [
            {
                "id": call_id(number, i),
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for i, c in enumerate(turn)
        ]
    return {"index": index, "message": message, "finish_reason": _finish(turn, "tool_calls")}


_USAGE = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}


def chat_chunks(number: int, turn: Turn, *, usage: bool = False) -> Iterator[dict[str, Any]]:
    """The turn as a stream: a tool call's id and name first, then its arguments in pieces,
    as the real API splits them; with ``usage``, a last chunk with no choices carries it."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{number}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": "test-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    yield chunk({"role": "assistant", "content": ""})
    if isinstance(turn, str):
        for word in re.findall(r"\S+\s*", turn):
            yield chunk({"content": word})
    else:
        for i, c in enumerate(turn):
            head = {"index": i, "id": call_id(number, i), "type": "function"}
            yield chunk({"tool_calls": [{**head, "function": {"name": c.name, "arguments": ""}}]})
            for piece in _pieces(c.arguments, 7):
                yield chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
    yield chunk({}, _finish(turn, "tool_calls"))
    if usage:
        yield {**chunk({}), "choices": [], "usage": _USAGE}


# --- OpenAI Responses --------------------------------------------------------------------------


def response(number: int, turn: Turn) -> dict[str, Any]:
    if isinstance(turn, str):
        output: list[dict[str, Any]] = [
            {
                "type": "message",
                "id": f"msg_{number}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": turn, "annotations": []}],
            }
        ]
    else:
        output = [
            {
                "type": "function_call",
                "id": f"fc_{number}_{i}",
                "call_id": call_id(number, i),
                "name": c.name,
                "arguments": c.arguments,
                "status": "completed",
            }
            for i, c in enumerate(turn)
        ]
    return {
        "id": f"resp_{number}",
        "object": "response",
        "created_at": int(time.time()),
        "model": "test-model",
        "status": "completed",
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 1,
            "output_tokens": 1,
            "total_tokens": 2,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


def response_events(number: int, turn: Turn) -> Iterator[dict[str, Any]]:
    """The turn as Responses stream events: the response created, each output item added,
    its text or arguments in deltas, the item done, and the response completed."""
    done = response(number, turn)
    started = {**done, "status": "in_progress", "output": [], "usage": None}
    events: list[dict[str, Any]] = [{"type": "response.created", "response": started}]
    for i, item in enumerate(done["output"]):
        at = {"item_id": item["id"], "output_index": i}
        if item["type"] == "function_call":
            events.append(
                {
                    "type": "response.output_item.added",
                    "output_index": i,
                    "item": {**item, "arguments": "", "status": "in_progress"},
                }
            )
            for piece in _pieces(item["arguments"], 7):
                events.append(
                    {"type": "response.function_call_arguments.delta", **at, "delta": piece}
                )
            events.append(
                {
                    "type": "response.function_call_arguments.done",
                    **at,
                    "name": item["name"],
                    "arguments": item["arguments"],
                }
            )
        else:
            text = item["content"][0]["text"]
            part = {"type": "output_text", "text": "", "annotations": []}
            events.append(
                {
                    "type": "response.output_item.added",
                    "output_index": i,
                    "item": {**item, "content": [], "status": "in_progress"},
                }
            )
            events.append(
                {"type": "response.content_part.added", **at, "content_index": 0, "part": part}
            )
            for word in re.findall(r"\S+\s*", text):
                events.append(
                    {
                        "type": "response.output_text.delta",
                        **at,
                        "content_index": 0,
                        "delta": word,
                        "logprobs": [],
                    }
                )
            events.append(
                {
                    "type": "response.output_text.done",
                    **at,
                    "content_index": 0,
                    "text": text,
                    "logprobs": [],
                }
            )
            events.append(
                {
                    "type": "response.content_part.done",
                    **at,
                    "content_index": 0,
                    "part": {**part, "text": text},
                }
            )
        events.append({"type": "response.output_item.done", "output_index": i, "item": item})
    events.append({"type": "response.completed", "response": done})
    for n, event in enumerate(events):
        yield {**event, "sequence_number": n}


# --- Anthropic Messages ------------------------------------------------------------------------


def anthropic_message(number: int, turn: Turn) -> dict[str, Any]:
    if isinstance(turn, str):
        content: list[dict[str, Any]] = [{"type": "text", "text": turn}]
    else:
        content = [
            {"type": "tool_use", "id": call_id(number, i), "name": c.name, "input": c.args()}
            for i, c in enumerate(turn)
        ]
    return {
        "id": f"msg_{number}",
        "type": "message",
        "role": "assistant",
        "model": "test-model",
        "content": content,
        "stop_reason": _finish(turn, "tool_use", "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }


def anthropic_events(number: int, turn: Turn) -> Iterator[dict[str, Any]]:
    """The turn as Messages stream events: the message started, each content block with its
    text or its input as JSON in deltas, the stop reason and the usage, the message stopped."""
    done = anthropic_message(number, turn)
    started = {
        **done,
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": 1, "output_tokens": 0},
    }
    yield {"type": "message_start", "message": started}
    for i, block in enumerate(done["content"]):
        if block["type"] == "text":
            yield {
                "type": "content_block_start",
                "index": i,
                "content_block": {"type": "text", "text": ""},
            }
            for word in re.findall(r"\S+\s*", block["text"]):
                delta = {"type": "text_delta", "text": word}
                yield {"type": "content_block_delta", "index": i, "delta": delta}
        else:
            yield {
                "type": "content_block_start",
                "index": i,
                "content_block": {**block, "input": {}},
            }
            for piece in _pieces(json.dumps(block["input"]), 7):
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield {"type": "content_block_delta", "index": i, "delta": delta}
        yield {"type": "content_block_stop", "index": i}
    yield {
        "type": "message_delta",
        "delta": {"stop_reason": done["stop_reason"], "stop_sequence": None},
        "usage": {"output_tokens": 1},
    }
    yield {"type": "message_stop"}


# --- Gemini generateContent --------------------------------------------------------------------


def gemini_response(number: int, turn: Turn) -> dict[str, Any]:
    if isinstance(turn, str):
        parts: list[dict[str, Any]] = [{"text": turn}]
    else:
        parts = [
            {"functionCall": {"id": call_id(number, i), "name": c.name, "args": c.args()}}
            for i, c in enumerate(turn)
        ]
    return {
        "candidates": [
            {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2},
        "modelVersion": "test-model",
    }


def gemini_chunks(number: int, turn: Turn) -> Iterator[dict[str, Any]]:
    """The turn as ``streamGenerateContent`` chunks: a text word by word, function calls in
    one chunk (as the API sends them whole); the last chunk has the finish reason."""
    whole = gemini_response(number, turn)
    parts = whole["candidates"][0]["content"]["parts"]
    if isinstance(turn, str):
        pieces = [[{"text": word}] for word in re.findall(r"\S+\s*", turn)] or [[{"text": ""}]]
    else:
        pieces = [parts]
    for n, piece in enumerate(pieces):
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": piece}, "index": 0}
        if n == len(pieces) - 1:
            candidate["finishReason"] = "STOP"
        yield {**whole, "candidates": [candidate]}


# --- helpers -----------------------------------------------------------------------------------


def _finish(turn: Turn, tools: str, text: str = "stop") -> str:
    return text if isinstance(turn, str) else tools


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _sse(chunks: Iterator[dict[str, Any]], *, named: bool = False, done: bool = True) -> bytes:
    """Server-sent events; ``named`` gives each its ``event:`` line (its type), as the
    Responses and Messages APIs do; ``done`` ends them with ``[DONE]`` (Chat Completions)."""
    events = [
        (f"event: {c['type']}\n" if named else "") + f"data: {json.dumps(c)}\n\n" for c in chunks
    ]
    return ("".join(events) + ("data: [DONE]\n\n" if done else "")).encode()


if __name__ == "__main__":  # pragma: no cover - for trying an example by hand
    with ModelServer([[ToolCall("place_order", '{"item": "tea", "quantity": 2}')], "Done."]) as s:
        print(f"serving on {s.url}; Ctrl-C to stop")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
