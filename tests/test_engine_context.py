"""The context the product reports is the engine's real max_model_len, never the one asked for.

launch.sh exports the planned context as WORKBENCH_MAX_CONTEXT; when the engine really holds
less (vLLM's --max-model-len auto, or an external engine), the smaller real value must win in
/v1/models, in the context error and in the UI's gauge.
"""

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.engine.profiles import EMBEDDED_CONTEXT
from server.settings import Settings
from server.workbench import Workbench


@pytest.fixture
def asked_more(tmp_path, engine_url, model_dir):
    """An app asked for 700,000 tokens in front of the real CPU engine (max_model_len 32,768)."""
    settings = Settings(
        data_dir=tmp_path / "data",
        profile="external",
        upstream_url=engine_url,
        vllm_api_key="boot-secret",
        tokenizer_path=model_dir,
        max_context=700_000,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        yield client, app.state.services


def test_a_larger_asked_context_does_not_mask_the_engines_real_one(asked_more):
    client, services = asked_more
    headers = {"Authorization": "Bearer boot-secret"}
    real = EMBEDDED_CONTEXT
    assert services.engine.max_context == real
    assert client.get("/v1/models", headers=headers).json()["data"][0]["max_model_len"] == real
    assert client.get("/v1/models/qwen3", headers=headers).json()["max_model_len"] == real
    # The UI's gauge reads the same number through the workbench services.
    assert Workbench(services).max_context == real
    # The context error names the real limit.
    body = {
        "model": "qwen3",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": "word " * (EMBEDDED_CONTEXT + 100)}],
    }
    refused = client.post("/v1/chat/completions", json=body, headers=headers)
    assert refused.status_code == 400
    assert f"maximum context length of {real} tokens" in refused.json()["error"]["message"]
