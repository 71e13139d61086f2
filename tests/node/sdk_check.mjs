// The official OpenAI Node SDK against our /v1, as a Node program would use it.
// Prints one JSON object of what it saw; tests/test_gateway_node_sdk.py checks it.
// Usage: node sdk_check.mjs BASE_URL API_KEY
import OpenAI from "openai";

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });
const seen = {};

function describe(err) {
  if (!(err instanceof OpenAI.APIError)) throw err;
  return { class: err.constructor.name, status: err.status, type: err.type, code: err.code,
           param: err.param, message: err.message };
}

const models = [];
for await (const model of client.models.list()) models.push(model);
seen.models = models.map((m) => ({ id: m.id, object: m.object, owned_by: m.owned_by }));

const { data: chat, response } = await client.chat.completions
  .create({ model: "qwen3", messages: [{ role: "user", content: "Say hello." }], max_tokens: 12 })
  .withResponse();
seen.chat = { object: chat.object, content: chat.choices[0].message.content,
              role: chat.choices[0].message.role, finish_reason: chat.choices[0].finish_reason,
              usage: chat.usage };
seen.headers = Object.fromEntries(
  ["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-limit-tokens",
   "x-ratelimit-remaining-tokens", "x-ratelimit-limit", "x-ratelimit-remaining"]
    .map((name) => [name, response.headers.get(name)]));

const stream = await client.chat.completions.create({
  model: "qwen3", messages: [{ role: "user", content: "Count from one to five." }],
  max_tokens: 16, stream: true, stream_options: { include_usage: true },
});
const pieces = [];
let usage = null;
let firstRole = null;
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  for (const choice of chunk.choices) {
    if (firstRole === null && choice.delta.role) firstRole = choice.delta.role;
    pieces.push(choice.delta.content ?? "");
  }
}
seen.stream = { pieces: pieces.length, text: pieces.join(""), firstRole, usage };

// The stream helper accumulates the deltas into a whole message.
const runner = client.chat.completions.stream({
  model: "qwen3", messages: [{ role: "user", content: "Name a colour." }], max_tokens: 8,
});
const final = await runner.finalChatCompletion();
seen.helper = { content: final.choices[0].message.content, finish: final.choices[0].finish_reason };

const legacy = await client.completions.create({ model: "qwen3", prompt: "def add(a, b):", max_tokens: 8 });
seen.legacy = { object: legacy.object, text: legacy.choices[0].text };

seen.errors = {};
const wrongKey = new OpenAI({ baseURL, apiKey: "sk-wrong", maxRetries: 0 });
for (const [name, call] of Object.entries({
  wrong_key: () => wrongKey.models.list(),
  unknown_model: () => client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] }),
  temperature: () => client.chat.completions.create({ model: "qwen3", temperature: 7, messages: [{ role: "user", content: "hi" }] }),
  empty_messages: () => client.chat.completions.create({ model: "qwen3", messages: [] }),
  over_context: () => client.chat.completions.create({
    model: "qwen3", max_tokens: 16,
    messages: [{ role: "user", content: "lorem ipsum dolor ".repeat(20_000) }] }),
})) {
  try {
    await call();
    seen.errors[name] = null;
  } catch (err) {
    seen.errors[name] = describe(err);
  }
}
console.log(JSON.stringify(seen));
