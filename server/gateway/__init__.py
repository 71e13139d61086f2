"""The `/v1` gateway: OpenAI-compatible API in front of vLLM.

Modules, each owning one thing: `protocol` (wire models, defaults), `errors` (the one error
shape) and `handlers` (exceptions → that shape), `auth` (Bearer keys), `limits` (RPM, TPM,
concurrency), `body` (size-capped JSON bodies), `sizing` (token counts, context fitting),
`documents` (PDF parts → text), `upstream` (the engine client), `streaming` (the SSE relay),
`completions` (the service that decides), `accounting` (usage rows), `metrics` (Prometheus),
`routes` (HTTP only), `runtime` (built from what the app opened).
"""
