"""The official OpenAI Node SDK (pinned in tests/node/package-lock.json), unmodified, against
the gateway in front of the real engine: listing, chat, streaming, the stream helper, legacy
completions, the rate-limit headers and the SDK's typed errors for our error bodies."""

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from storage import Store
from storage.keys import create_key

NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="module")
def seen(app) -> dict:
    node = shutil.which("node")
    assert node, "node is missing: ./launch.sh test installs it"
    assert (NODE_DIR / "node_modules" / "openai").is_dir(), "./launch.sh test installs the SDK"
    with Store(app.data_dir / "workbench.db") as store:  # its own key: its own rate limits
        key = create_key(store.db, f"node-sdk-{time.time_ns()}")
    result = subprocess.run(
        [node, str(NODE_DIR / "sdk_check.mjs"), app.v1, key],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_models_list_names_qwen3(seen):
    assert seen["models"] == [{"id": "qwen3", "object": "model", "owned_by": "vllm"}]


def test_chat_completion_and_its_rate_limit_headers(seen):
    chat = seen["chat"]
    assert chat["object"] == "chat.completion" and chat["role"] == "assistant"
    assert chat["content"] and chat["finish_reason"] in ("stop", "length")
    usage = chat["usage"]
    assert 0 < usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    headers = seen["headers"]
    assert headers["x-ratelimit-limit-requests"] == headers["x-ratelimit-limit"] == "60"
    assert int(headers["x-ratelimit-remaining-requests"]) < 60
    assert int(headers["x-ratelimit-remaining-tokens"]) < int(headers["x-ratelimit-limit-tokens"])


def test_streaming_arrives_in_pieces_with_the_role_first_and_usage_last(seen):
    stream = seen["stream"]
    assert stream["pieces"] > 1 and stream["text"].strip()
    assert stream["firstRole"] == "assistant"
    assert 0 < stream["usage"]["completion_tokens"] <= 16


def test_the_sdks_stream_helper_assembles_the_answer(seen):
    assert seen["helper"]["content"] and seen["helper"]["finish"] in ("stop", "length")


def test_legacy_completions(seen):
    assert seen["legacy"]["object"] == "text_completion" and seen["legacy"]["text"]


@pytest.mark.parametrize(
    "case, cls, status, code, param",
    [
        ("wrong_key", "AuthenticationError", 401, "invalid_api_key", None),
        ("unknown_model", "NotFoundError", 404, "model_not_found", "model"),
        ("temperature", "BadRequestError", 400, None, "temperature"),
        ("empty_messages", "BadRequestError", 400, None, "messages"),
        ("over_context", "BadRequestError", 400, "context_length_exceeded", "messages"),
    ],
)
def test_errors_reach_node_as_the_sdks_typed_errors(seen, case, cls, status, code, param):
    error = seen["errors"][case]
    assert error is not None, f"{case} was accepted"
    assert (error["class"], error["status"], error["param"]) == (cls, status, param)
    if code:
        assert error["code"] == code
    assert error["message"] and "Traceback" not in error["message"]
    if case == "over_context":
        assert re.search(
            r"Request exceeds maximum context length of \d[\d,]* tokens", error["message"]
        )
