"""The official OpenAI Python SDK against a running Switchyard (SWITCHYARD_BASE_URL) backed by the mock upstream.

Run by tests/tests/sdk.rs, which starts the mock and the gateway on ephemeral ports.
"""

import json
import os

import openai
import pytest

BASE_URL = os.environ["SWITCHYARD_BASE_URL"]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
def client():
    # No retries: an error must surface as the SDK's typed exception on the first try.
    return openai.OpenAI(base_url=BASE_URL, api_key="sk-test", max_retries=0, timeout=20)


@pytest.mark.parametrize("model", ["chat", "claude"])
def test_non_stream(client, model):
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello sdk"}])
    assert r.object == "chat.completion"
    assert "hello sdk" in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0


@pytest.mark.parametrize("model", ["chat", "claude"])
def test_stream(client, model):
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "stream sdk"}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "stream sdk" in text
    # Without include_usage every chunk has a choice, as with OpenAI.
    assert all(len(c.choices) > 0 for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", ["chat", "claude"])
def test_stream_with_usage(client, model):
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "usage please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    # The gateway's cost rides along as an extra field the SDK keeps but does not need.
    extra = chunks[-1].model_extra or {}
    assert float(extra["switchyard"]["cost_usd"]) > 0


@pytest.mark.parametrize("model", ["chat", "claude"])
def test_tools_round_trip(client, model):
    messages = [{"role": "user", "content": "weather in Paris?"}]
    r = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "demo"}
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18C"})
    r = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
    assert "18C" in r.choices[0].message.content


@pytest.mark.parametrize("model", ["chat", "claude"])
def test_streamed_tool_call(client, model):
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER_TOOL], stream=True
    )
    args, name = "", None
    for c in stream:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            name = name or tc.function.name
            args += tc.function.arguments or ""
    assert name == "get_weather"
    assert json.loads(args) == {"city": "demo"}


def test_json_mode(client):
    r = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "json"}], response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_raw_response_headers(client):
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "headers"}]
    )
    assert raw.headers["x-switchyard-deployment"] == "oa/mock"
    assert float(raw.headers["x-switchyard-cost-usd"]) > 0
    assert raw.headers["x-request-id"]
    assert raw.parse().choices[0].message.content


def test_errors_are_typed(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="chat", messages=[{"role": "robot", "content": "x"}])
    assert e.value.param == "messages[0].role"
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="rate-limited", messages=[{"role": "user", "content": "x"}])
    assert e.value.response.headers["retry-after"] == "3"
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="broken", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 502
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="hangs", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 504


def test_midstream_failure_raises(client):
    stream = client.chat.completions.create(
        model="stream-error", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_models_and_embeddings(client):
    ids = [m.id for m in client.models.list()]
    assert "chat" in ids and "embed" in ids
    assert client.models.retrieve("chat").id == "chat"
    e = client.embeddings.create(model="embed", input=["a", "b"])
    assert len(e.data) == 2 and len(e.data[0].embedding) > 0
    # The SDK asks for base64 by default and decodes it; the mock returns floats, which it also accepts.
    assert e.usage.prompt_tokens > 0


def test_a_route_is_just_a_model_name(client):
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hello router"}]
    )
    assert raw.headers["x-switchyard-route"] == "auto"
    assert raw.headers["x-switchyard-tier"] in ("cheap", "strong", "specialist")
    r = raw.parse()
    assert r.object == "chat.completion"
    assert "hello router" in r.choices[0].message.content


def test_a_route_in_the_base_url(client):
    routed = openai.OpenAI(
        base_url=BASE_URL.replace("/v1", "/r/auto/v1"), api_key="sk-test", max_retries=0, timeout=20
    )
    stream = routed.chat.completions.create(
        model="whatever-the-app-says", messages=[{"role": "user", "content": "route by url"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "route by url" in text


def test_a_cascade_escalation_is_one_answer(client):
    # The cheap model refuses; the client sees only the strong model's answer, streamed or not.
    raw = client.chat.completions.with_raw_response.create(
        model="careful", messages=[{"role": "user", "content": "check me"}], stream=True
    )
    assert raw.headers["x-switchyard-cascade"] == "escalated:refusal"
    chunks = [c for c in raw.parse() if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert "check me" in text and "sorry" not in text.lower()
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["stop"]
    r = client.chat.completions.create(model="careful", messages=[{"role": "user", "content": "again"}])
    assert "again" in r.choices[0].message.content and "sorry" not in r.choices[0].message.content.lower()


# A server that behaves like llama.cpp's (the mock with `quirks`) looks like OpenAI through the
# gateway: a usage chunk when asked, max_completion_tokens honoured, tool names sent once.


def test_quirky_server_stream_usage(client):
    stream = client.chat.completions.create(
        model="quirky",
        messages=[{"role": "user", "content": "usage from a server that ignores the option"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens
    assert (chunks[-1].model_extra or {})["switchyard"]["usage_source"] == "estimated"


def test_quirky_server_max_completion_tokens(client):
    r = client.chat.completions.create(
        model="quirky",
        messages=[{"role": "user", "content": "please write a very long answer about everything"}],
        max_completion_tokens=3,
    )
    assert r.choices[0].finish_reason == "length"


def test_quirky_server_streamed_tool_call_assembles(client):
    # The SDK's stream helper concatenates names and ids as OpenAI's deltas require.
    with client.chat.completions.stream(
        model="quirky", messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert call.id.count("call_") == 1
    assert json.loads(call.function.arguments) == {"city": "demo"}


def test_structured_output_parses(client):
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int
        tags: list[str]

    r = client.chat.completions.parse(
        model="chat", messages=[{"role": "user", "content": "who?"}], response_format=Person
    )
    person = r.choices[0].message.parsed
    assert isinstance(person, Person) and isinstance(person.age, int) and person.tags
