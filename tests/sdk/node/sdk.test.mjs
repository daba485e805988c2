// The official OpenAI Node SDK against a running Switchyard (SWITCHYARD_BASE_URL) backed by the mock upstream.
// Run by tests/tests/sdk.rs, which starts the mock and the gateway on ephemeral ports.

import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.SWITCHYARD_BASE_URL,
  apiKey: "sk-test",
  maxRetries: 0,
  timeout: 20_000,
});

const weatherTool = {
  type: "function",
  function: {
    name: "get_weather",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

for (const model of ["chat", "claude"]) {
  test(`non-stream (${model})`, async () => {
    const r = await client.chat.completions.create({ model, messages: [{ role: "user", content: "hello node" }] });
    assert.match(r.choices[0].message.content, /hello node/);
    assert.ok(r.usage.prompt_tokens > 0);
  });

  test(`stream with usage (${model})`, async () => {
    const stream = await client.chat.completions.create({
      model,
      messages: [{ role: "user", content: "node stream" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let last;
    for await (const chunk of stream) {
      if (chunk.choices.length) text += chunk.choices[0].delta.content ?? "";
      last = chunk;
    }
    assert.match(text, /node stream/);
    assert.deepEqual(last.choices, []);
    assert.ok(last.usage.total_tokens > 0);
    assert.ok(Number(last.switchyard.cost_usd) > 0);
  });

  test(`tool call round trip (${model})`, async () => {
    const messages = [{ role: "user", content: "weather?" }];
    const r = await client.chat.completions.create({ model, messages, tools: [weatherTool] });
    const call = r.choices[0].message.tool_calls[0];
    assert.equal(call.function.name, "get_weather");
    assert.deepEqual(JSON.parse(call.function.arguments), { city: "demo" });
    messages.push(r.choices[0].message, { role: "tool", tool_call_id: call.id, content: "21C" });
    const r2 = await client.chat.completions.create({ model, messages, tools: [weatherTool] });
    assert.match(r2.choices[0].message.content, /21C/);
  });

  test(`streamed tool call (${model})`, async () => {
    const stream = await client.chat.completions.create({
      model,
      messages: [{ role: "user", content: "weather?" }],
      tools: [weatherTool],
      stream: true,
    });
    let args = "";
    for await (const chunk of stream) {
      for (const tc of chunk.choices[0]?.delta?.tool_calls ?? []) args += tc.function?.arguments ?? "";
    }
    assert.deepEqual(JSON.parse(args), { city: "demo" });
  });
}

test("JSON mode", async () => {
  const r = await client.chat.completions.create({
    model: "chat",
    messages: [{ role: "user", content: "json" }],
    response_format: { type: "json_object" },
  });
  assert.equal(typeof JSON.parse(r.choices[0].message.content), "object");
});

test("errors map to the SDK's typed errors", async () => {
  await assert.rejects(
    client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] }),
    (e) => e instanceof OpenAI.NotFoundError && e.code === "model_not_found",
  );
  await assert.rejects(
    client.chat.completions.create({ model: "chat", messages: [{ role: "robot", content: "x" }] }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === "messages[0].role",
  );
  await assert.rejects(
    client.chat.completions.create({ model: "rate-limited", messages: [{ role: "user", content: "x" }] }),
    (e) => e instanceof OpenAI.RateLimitError && e.headers.get("retry-after") === "3",
  );
  await assert.rejects(
    client.chat.completions.create({ model: "broken", messages: [{ role: "user", content: "x" }] }),
    (e) => e instanceof OpenAI.InternalServerError && e.status === 502,
  );
});

test("a failure mid-stream throws while iterating", async () => {
  const stream = await client.chat.completions.create({
    model: "stream-error",
    messages: [{ role: "user", content: "x" }],
    stream: true,
  });
  await assert.rejects(async () => {
    for await (const _ of stream) {
      // drain
    }
  }, OpenAI.APIError);
});

test("models and embeddings", async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes("chat"));
  const e = await client.embeddings.create({ model: "embed", input: "hello" });
  assert.equal(e.data.length, 1);
  assert.ok(e.data[0].embedding.length > 0);
});

test("a cascade escalation streams one answer", async () => {
  // The cheap model of `careful` refuses; the strong model's answer is the only one streamed.
  const { data: stream, response } = await client.chat.completions
    .create({
      model: "careful",
      messages: [{ role: "user", content: "node cascade" }],
      stream: true,
      stream_options: { include_usage: true },
    })
    .withResponse();
  assert.equal(response.headers.get("x-switchyard-cascade"), "escalated:refusal");
  let text = "";
  const finishes = [];
  let usage;
  for await (const chunk of stream) {
    if (chunk.choices.length) {
      text += chunk.choices[0].delta.content ?? "";
      if (chunk.choices[0].finish_reason) finishes.push(chunk.choices[0].finish_reason);
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.match(text, /node cascade/);
  assert.doesNotMatch(text, /sorry/i);
  assert.deepEqual(finishes, ["stop"]);
  assert.ok(usage.completion_tokens > 0);
});

// A server that behaves like llama.cpp's (the mock with `quirks`) looks like OpenAI through the gateway.
test("a quirky server still sends a usage chunk when asked", async () => {
  const stream = await client.chat.completions.create({
    model: "quirky",
    messages: [{ role: "user", content: "usage please" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let last;
  for await (const chunk of stream) last = chunk;
  assert.deepEqual(last.choices, []);
  assert.ok(last.usage.prompt_tokens > 0);
  assert.equal(last.switchyard.usage_source, "estimated");
});

test("a quirky server honours max_completion_tokens", async () => {
  const r = await client.chat.completions.create({
    model: "quirky",
    messages: [{ role: "user", content: "please write a very long answer about everything" }],
    max_completion_tokens: 3,
  });
  assert.equal(r.choices[0].finish_reason, "length");
});

test("a quirky server's streamed tool call assembles once", async () => {
  const runner = client.chat.completions.stream({
    model: "quirky",
    messages: [{ role: "user", content: "weather?" }],
    tools: [weatherTool],
  });
  const final = await runner.finalChatCompletion();
  const call = final.choices[0].message.tool_calls[0];
  assert.equal(call.function.name, "get_weather");
  assert.deepEqual(JSON.parse(call.function.arguments), { city: "demo" });
});

test("a json_schema answer fits its schema", async () => {
  const r = await client.chat.completions.create({
    model: "chat",
    messages: [{ role: "user", content: "who?" }],
    response_format: {
      type: "json_schema",
      json_schema: {
        name: "person",
        strict: true,
        schema: {
          type: "object",
          properties: { name: { type: "string" }, age: { type: "integer" } },
          required: ["name", "age"],
          additionalProperties: false,
        },
      },
    },
  });
  const v = JSON.parse(r.choices[0].message.content);
  assert.deepEqual(Object.keys(v).sort(), ["age", "name"]);
  assert.equal(typeof v.name, "string");
  assert.ok(Number.isInteger(v.age));
});

// The response cache: answers replayed as streams the SDK parses, tool calls included.
const unique = (text) => [{ role: "user", content: `${text} ${Math.random().toString(36).slice(2)}` }];

test("a cached answer replays as a stream, with and without usage", async () => {
  const messages = unique("node cache replay");
  const first = await client.chat.completions.create({ model: "cached", messages });
  for (const includeUsage of [false, true]) {
    const { data: stream, response } = await client.chat.completions
      .create({
        model: "cached",
        messages,
        stream: true,
        ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
      })
      .withResponse();
    assert.equal(response.headers.get("x-switchyard-cache"), "hit");
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.ok(chunks.length > 3);
    const text = chunks.map((c) => (c.choices.length ? c.choices[0].delta.content ?? "" : "")).join("");
    assert.equal(text, first.choices[0].message.content);
    const last = chunks[chunks.length - 1];
    if (includeUsage) {
      assert.deepEqual(last.choices, []);
      assert.equal(last.usage.total_tokens, first.usage.total_tokens);
    } else {
      assert.equal(last.choices[0].finish_reason, "stop");
    }
  }
});

test("a cached tool call assembles once in the stream helper", async () => {
  const messages = unique("node cached weather");
  const first = await client.chat.completions.create({ model: "cached-tools", messages, tools: [weatherTool] });
  const runner = client.chat.completions.stream({ model: "cached-tools", messages, tools: [weatherTool] });
  const final = await runner.finalChatCompletion();
  const call = final.choices[0].message.tool_calls[0];
  assert.equal(call.function.name, "get_weather");
  assert.equal(call.id, first.choices[0].message.tool_calls[0].id);
  assert.deepEqual(JSON.parse(call.function.arguments), JSON.parse(first.choices[0].message.tool_calls[0].function.arguments));
  assert.equal(final.choices[0].finish_reason, "tool_calls");
});
