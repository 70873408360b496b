"""A complete answer as its provider's server-sent events: the fake server's streams, and the gateway's
streams answered by a fallback model of another provider (asked without streaming, then re-told as events)."""

from __future__ import annotations

import json

#: words of text per delta event
STREAM_WORDS_PER_EVENT = 8


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [" ".join(words[k:k + STREAM_WORDS_PER_EVENT]) + (" " if k + STREAM_WORDS_PER_EVENT < len(words) else "")
            for k in range(0, len(words), STREAM_WORDS_PER_EVENT)] or [""]


def _sse(data: dict, event: str | None = None) -> str:
    return (f"event: {event}\n" if event else "") + f"data: {json.dumps(data)}\n\n"


def _responses_events(response: dict) -> list[str]:
    """A Responses API answer as its typed events: created, the text's deltas, then completed (or incomplete)."""
    message = response["output"][0]
    part = message["content"][0]
    item = {"item_id": message["id"], "output_index": 0}
    events = [("response.created", {"response": {**response, "status": "in_progress", "output": [], "usage": None,
                                                 "incomplete_details": None}}),
              ("response.in_progress", {"response": {**response, "status": "in_progress", "output": [],
                                                     "usage": None, "incomplete_details": None}}),
              ("response.output_item.added", {"output_index": 0,
                                              "item": {**message, "status": "in_progress", "content": []}}),
              ("response.content_part.added", {**item, "content_index": 0, "part": {**part, "text": ""}})]
    events += [("response.output_text.delta", {**item, "content_index": 0, "delta": p, "logprobs": []})
               for p in _pieces(part["text"])]
    events += [("response.output_text.done", {**item, "content_index": 0, "text": part["text"], "logprobs": []}),
               ("response.content_part.done", {**item, "content_index": 0, "part": part}),
               ("response.output_item.done", {"output_index": 0, "item": message}),
               (f"response.{response['status']}", {"response": response})]
    return [_sse({"type": kind, "sequence_number": k, **data}, kind) for k, (kind, data) in enumerate(events)]


def stream_body(provider: str, response: dict, body: dict) -> bytes:
    """A complete answer as the provider's server-sent events, usage in the final events as the API sends it."""
    if response.get("object") == "response":
        out = _responses_events(response)
    elif provider == "openai":
        choice = response["choices"][0]
        head = {k: response[k] for k in ("id", "created", "model", "system_fingerprint")}
        head["object"] = "chat.completion.chunk"
        chunk = lambda delta, finish=None: _sse({**head, "choices": [  # noqa: E731
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})
        out = [chunk({"role": "assistant", "content": ""})]
        out += [chunk({"content": p}) for p in _pieces(choice["message"]["content"])]
        out.append(chunk({}, choice["finish_reason"]))
        if (body.get("stream_options") or {}).get("include_usage"):
            out.append(_sse({**head, "choices": [], "usage": response["usage"]}))
        out.append("data: [DONE]\n\n")
    elif provider == "anthropic":
        usage = response["usage"]
        start = {**response, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
        out = [_sse({"type": "message_start", "message": start}, "message_start"),
               _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                    "content_block_start")]
        out += [_sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                     "content_block_delta") for p in _pieces(response["content"][0]["text"])]
        out += [_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
                _sse({"type": "message_delta", "delta": {"stop_reason": response["stop_reason"], "stop_sequence": None},
                      "usage": {"output_tokens": usage["output_tokens"]}}, "message_delta"),
                _sse({"type": "message_stop"}, "message_stop")]
    else:
        candidate = response["candidates"][0]
        pieces = _pieces(candidate["content"]["parts"][0]["text"])
        out = []
        for k, p in enumerate(pieces):
            last = k == len(pieces) - 1
            event = {"candidates": [{"content": {"parts": [{"text": p}], "role": "model"}, "index": 0,
                                     **({"finishReason": candidate["finishReason"]} if last else {})}],
                     "modelVersion": response["modelVersion"], "responseId": response["responseId"]}
            if last:
                event["usageMetadata"] = response["usageMetadata"]
            out.append(_sse(event))
    return "".join(out).encode()
