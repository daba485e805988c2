"""The response cache as the official OpenAI Python SDK sees it: cached answers replayed as
streams the SDK parses chunk by chunk, with and without the usage chunk, tool calls included.

Run by tests/tests/sdk.rs against a gateway whose `cached` and `cached-tools` models cache.
"""

import json
import os
import uuid

import openai
import pytest

BASE_URL = os.environ["SWITCHYARD_BASE_URL"]

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def client():
    return openai.OpenAI(base_url=BASE_URL, api_key="sk-test", max_retries=0, timeout=20)


def ask(text):
    return [{"role": "user", "content": f"{text} {uuid.uuid4()}"}]


def test_a_json_answer_replays_as_a_stream(client):
    messages = ask("replay for the python sdk")
    raw = client.chat.completions.with_raw_response.create(model="cached", messages=messages)
    assert raw.headers["x-switchyard-cache"] == "miss"
    first = raw.parse()
    for include_usage in (False, True):
        options = {"stream_options": {"include_usage": True}} if include_usage else {}
        raw = client.chat.completions.with_raw_response.create(
            model="cached", messages=messages, stream=True, **options
        )
        assert raw.headers["x-switchyard-cache"] == "hit"
        chunks = list(raw.parse())
        assert len(chunks) > 3, "replayed chunk by chunk"
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == first.choices[0].message.content
        if include_usage:
            assert chunks[-1].choices == []
            assert chunks[-1].usage.total_tokens == first.usage.total_tokens
            assert all(c.usage is None for c in chunks[:-1])
        else:
            assert all(c.choices for c in chunks)
            assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_streamed_answer_is_kept_and_answers_json(client):
    messages = ask("stream then json for the python sdk")
    streamed = client.chat.completions.create(model="cached", messages=messages, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    raw = client.chat.completions.with_raw_response.create(model="cached", messages=messages)
    assert raw.headers["x-switchyard-cache"] == "hit"
    assert raw.parse().choices[0].message.content == text


def test_a_cached_tool_call_streams_as_one_call(client):
    messages = ask("weather in Lyon for the python sdk")
    first = client.chat.completions.create(model="cached-tools", messages=messages, tools=[TOOL])
    call = first.choices[0].message.tool_calls[0]
    raw = client.chat.completions.with_raw_response.create(
        model="cached-tools", messages=messages, tools=[TOOL], stream=True
    )
    assert raw.headers["x-switchyard-cache"] == "hit"
    name, args, ids = "", "", set()
    finish = None
    for c in raw.parse():
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            name += tc.function.name or ""
            args += tc.function.arguments or ""
            if tc.id:
                ids.add(tc.id)
        if c.choices and c.choices[0].finish_reason:
            finish = c.choices[0].finish_reason
    assert name == "get_weather"
    assert json.loads(args) == json.loads(call.function.arguments)
    assert ids == {call.id}
    assert finish == "tool_calls"


def test_no_cache_is_refreshed(client):
    messages = ask("refresh for the python sdk")
    client.chat.completions.create(model="cached", messages=messages)
    raw = client.chat.completions.with_raw_response.create(
        model="cached", messages=messages, extra_headers={"Cache-Control": "no-cache"}
    )
    assert raw.headers["x-switchyard-cache"] == "bypass"
    assert raw.headers.get("x-switchyard-deployment")
