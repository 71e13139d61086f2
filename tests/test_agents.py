"""Real coding agents, headless, against the app in front of the real CPU engine.

Each agent is the registry's own build (npm: `tests/agents/package-lock.json`; aider from PyPI in
`.venv/aider`; `./launch.sh test` installs both), runs one one-shot prompt with its own key, an
isolated HOME under the test's tmp path and its telemetry, error reporting and update checks off,
and must exit 0 with its requests in that key's usage rows. Answer quality does not matter here
(the embedded model is a 135M stand-in); the protocols do. The settings are the README's.
"""

import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest

from server.engine.profiles import EMBEDDED_CONTEXT
from storage import Store
from storage.keys import create_key
from tests.harness import REPO, log_tail, start_app
from tests.helpers import App, app_env, usage_rows, wait_until

AGENTS_BIN = REPO / "tests" / "agents" / "node_modules" / ".bin"
AIDER = REPO / ".venv" / "aider" / "bin" / "aider"
PROMPT = "Say hello in one word."
# One agent run: a few requests of 4-8k prompt tokens each (the agents' system prompts and
# tools), prefilled at ≈100 tokens/s on a busy two-core machine.
RUN_SECONDS = 1200
# Agents ask for the model's whole output window unless told; decoding runs at ≈8 tokens/s on
# a busy machine, so answers are kept short.
MAX_OUTPUT = 64
# Claude Code ends a run with exit 1 ("Claude's response exceeded the N output token maximum")
# when its answer and its retries all stop at the output limit. At Claude Code's temperature 1,
# under its own prompt, the 135M stand-in ran past 1,024 and 2,048 tokens in five of seven
# answers: that one exit is the stand-in's, not the protocol's, and is told apart below.
CLAUDE_MAX_OUTPUT = 256
pytestmark = pytest.mark.timeout(RUN_SECONDS + 60)


@pytest.fixture(scope="module")
def agent_app(engine_url, model_dir, tmp_path_factory) -> App:
    """An app that serves the `cpu` profile's whole context: an agent's first request is
    several thousand tokens (Claude Code's about 24k with the production template)."""
    data_dir = tmp_path_factory.mktemp("agents-app")
    key = "test-admin-" + secrets.token_hex(8)
    env = app_env(data_dir, engine_url, model_dir, key, WORKBENCH_MAX_CONTEXT=EMBEDDED_CONTEXT)
    proc, url = start_app(env, data_dir / "logs")
    yield App(url=url, api_key=key, data_dir=data_dir, engine_url=engine_url)
    proc.stop()


def agent_key(app: App, name: str) -> str:
    with Store(app.data_dir / "workbench.db") as store:
        return create_key(store.db, name)


def run(argv: list[str], home: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run an agent with only the environment it is given (no key or setting of this shell
    leaks in), in an empty work directory under `home`."""
    work = home / "work"
    work.mkdir(parents=True, exist_ok=True)
    full = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TMPDIR": str(home),
        "NO_COLOR": "1",
        "TERM": "dumb",
        **env,
    }
    return subprocess.run(
        argv,
        cwd=work,
        env=full,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
        check=False,
    )


def assert_ran(result: subprocess.CompletedProcess, app: App, key_name: str, endpoint: str):
    detail = (
        f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\n"
        f"stderr:\n{result.stderr[-3000:]}\napp log:\n{app_log(app)}"
    )
    assert result.returncode == 0, detail
    assert result.stdout.strip(), detail

    # The last answer's row may land just after the agent exits: an agent closes its stream on
    # the terminal event, and the row is written when the gateway sees the stream end.
    def answered() -> list[dict]:
        rows = [r for r in usage_rows(app, endpoint) if r["key_name"] == key_name]
        return (
            rows
            if any(r["status_code"] == 200 and r["completion_tokens"] > 0 for r in rows)
            else []
        )

    return wait_until(
        answered,
        timeout=30,
        message=f"no answered row of {key_name} on {endpoint}\n{usage_rows(app)}\n{detail}",
    )


def app_log(app: App) -> str:
    return "\n".join(log_tail(p, 20) for p in sorted((app.data_dir / "logs").glob("*.log")))


def test_qwen_code(agent_app, tmp_path):
    key = agent_key(agent_app, "qwen-code")
    settings = tmp_path / ".qwen" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(QWEN_CODE_SETTINGS)
    result = run(
        [str(AGENTS_BIN / "qwen"), PROMPT],
        tmp_path,
        {
            "OPENAI_BASE_URL": agent_app.v1,
            "OPENAI_API_KEY": key,
            "OPENAI_MODEL": "qwen3",
            "QWEN_CODE_MAX_OUTPUT_TOKENS": str(MAX_OUTPUT),
        },
    )
    assert_ran(result, agent_app, "qwen-code", "/v1/chat/completions")


QWEN_CODE_SETTINGS = """{
  "security": {"auth": {"selectedType": "openai"}},
  "model": {"name": "qwen3"},
  "privacy": {"usageStatisticsEnabled": false},
  "telemetry": {"enabled": false},
  "general": {"enableAutoUpdate": false}
}
"""


def test_aider(agent_app, tmp_path):
    key = agent_key(agent_app, "aider")
    (tmp_path / "model-settings.yml").write_text(
        f"- name: openai/qwen3\n  extra_params:\n    max_tokens: {MAX_OUTPUT}\n"
    )
    (tmp_path / "model-metadata.json").write_text(
        json.dumps(
            {
                "openai/qwen3": {
                    "max_input_tokens": EMBEDDED_CONTEXT,
                    "max_output_tokens": MAX_OUTPUT,
                    "input_cost_per_token": 0,
                    "output_cost_per_token": 0,
                    "litellm_provider": "openai",
                    "mode": "chat",
                }
            }
        )
    )
    result = run(
        [
            str(AIDER),
            "--model",
            "openai/qwen3",
            "--model-settings-file",
            str(tmp_path / "model-settings.yml"),
            "--model-metadata-file",
            str(tmp_path / "model-metadata.json"),
            "--analytics-disable",
            "--no-check-update",
            "--no-show-release-notes",
            "--no-show-model-warnings",
            "--no-git",
            "--map-tokens",
            "0",
            "--no-pretty",
            "--no-fancy-input",
            "--no-detect-urls",
            "--yes-always",
            "--message",
            PROMPT,
        ],
        tmp_path,
        {
            "OPENAI_API_BASE": agent_app.v1,
            "OPENAI_API_KEY": key,
            # litellm's model list from the package, not fetched at import
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        },
    )
    assert_ran(result, agent_app, "aider", "/v1/chat/completions")


def test_codex(agent_app, tmp_path):
    key = agent_key(agent_app, "codex")
    config = tmp_path / ".codex" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(CODEX_CONFIG.format(url=agent_app.v1, context=EMBEDDED_CONTEXT))
    result = run(
        [str(AGENTS_BIN / "codex"), "exec", "--skip-git-repo-check", PROMPT],
        tmp_path,
        {"CODEX_HOME": str(config.parent), "WORKBENCH_API_KEY": key},
    )
    assert_ran(result, agent_app, "codex", "/v1/responses")


CODEX_CONFIG = """model = "qwen3"
model_provider = "workbench"
model_context_window = {context}
check_for_update_on_startup = false

[model_providers.workbench]
name = "Qwen Workbench"
base_url = "{url}"
env_key = "WORKBENCH_API_KEY"
wire_api = "responses"

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"
metrics_exporter = "none"
trace_exporter = "none"
"""


def test_claude_code(agent_app, tmp_path):
    key = agent_key(agent_app, "claude-code")
    result = run(
        [str(AGENTS_BIN / "claude"), "-p", PROMPT],
        tmp_path,
        {
            "CLAUDE_CONFIG_DIR": str(tmp_path / ".claude"),
            "ANTHROPIC_BASE_URL": agent_app.url,
            "ANTHROPIC_API_KEY": key,
            **{
                f"ANTHROPIC_{slot}MODEL": "qwen3"
                for slot in ("", "DEFAULT_OPUS_", "DEFAULT_SONNET_", "DEFAULT_HAIKU_")
            },
            "CLAUDE_CODE_MAX_CONTEXT_TOKENS": str(EMBEDDED_CONTEXT),
            "CLAUDE_CODE_MAX_OUTPUT_TOKENS": str(CLAUDE_MAX_OUTPUT),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "DISABLE_AUTOUPDATER": "1",
        },
    )
    if result.returncode == 1 and (
        f"exceeded the {CLAUDE_MAX_OUTPUT} output token maximum" in result.stdout
    ):
        # Every answer was served whole, each stopped at the limit Claude Code asked for.
        rows = [
            r
            for r in usage_rows(agent_app, "/v1/messages")
            if r["key_name"] == "claude-code" and r["status_code"] == 200
        ]
        assert rows and all(r["completion_tokens"] == CLAUDE_MAX_OUTPUT for r in rows), rows
        return
    assert_ran(result, agent_app, "claude-code", "/v1/messages")
