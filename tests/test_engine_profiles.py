"""The engine command for each profile, as `launch.sh --dry-run` prints it."""

import json
import os
import shlex
import subprocess
import sys

import pytest

from server.engine.profiles import ProfileError, cpu_plan, h200x4_memory, h200x4_plan
from server.settings import Settings
from tests.harness import REPO


def dry_run(**env) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    full.update(env)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "server.engine",
            "plan",
            "--dry-run",
            "--engine-python",
            "/opt/engine/bin/python",
        ],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


def engine_argv(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    words = shlex.split(lines[lines.index("# engine:") + 1])
    while "=" in words[0]:  # the engine's environment comes first (PYTHONPATH, ...)
        words.pop(0)
    return words


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_h200x4_dry_run_has_every_production_flag():
    result = dry_run(WORKBENCH_PROFILE="h200x4")
    assert result.returncode == 0, result.stderr
    argv = engine_argv(result.stdout)
    assert argv[:3] == ["/opt/engine/bin/vllm", "serve", "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8"]
    assert flag(argv, "--served-model-name") == "qwen3"
    assert flag(argv, "--host") == "127.0.0.1"
    assert flag(argv, "--port") == "8001"
    assert flag(argv, "--tensor-parallel-size") == "4"
    assert flag(argv, "--kv-cache-dtype") == "fp8"
    assert flag(argv, "--max-model-len") == "700000"
    assert flag(argv, "--gpu-memory-utilization") == "0.98"
    assert flag(argv, "--max-num-batched-tokens") == "4096"
    assert flag(argv, "--max-num-seqs") == "16"
    assert json.loads(flag(argv, "--compilation-config")) == {
        "cudagraph_capture_sizes": [1, 2, 4, 8, 16]
    }
    assert flag(argv, "--tool-call-parser") == "qwen3_coder"
    for switch in (
        "--enable-expert-parallel",
        "--enable-prefix-caching",
        "--enable-auto-tool-choice",
    ):
        assert switch in argv
    assert json.loads(flag(argv, "--hf-overrides")) == {
        "max_position_embeddings": 786432,  # the scaled window: 262,144 x 3
        "rope_parameters": {
            "rope_type": "yarn",
            "factor": 3.0,
            "original_max_position_embeddings": 262144,
            "rope_theta": 10000000,
        },
    }
    # Every term of the memory arithmetic, and the margin, are printed before the command.
    for term in (
        "× utilization 0.98",
        "− weights",
        "− non-torch",
        "− activation peak",
        "− CUDA-graph estimate",
        "= KV cache",
        "− one 700,000-token request",
    ):
        assert term in result.stdout
    margin = next(line for line in result.stdout.splitlines() if "= margin" in line)
    assert float(margin.split()[3]) > 1.5 and margin.endswith("(fits)")
    assert "WORKBENCH_PROFILE=h200x4 WORKBENCH_MAX_CONTEXT=700000" in result.stdout


def test_h200x4_refuses_a_context_that_cannot_fit():
    result = dry_run(WORKBENCH_PROFILE="h200x4", WORKBENCH_MAX_CONTEXT="1000000")
    assert result.returncode == 2
    assert result.stdout == ""
    largest = h200x4_memory(1_000_000).max_tokens
    assert 700_000 < largest < 1_000_000
    assert "A context of 1,000,000 tokens does not fit on 4×H200" in result.stderr
    assert "= margin" in result.stderr and "DOES NOT FIT" in result.stderr
    # The largest that fits, the exact ways to start with it, and what would give more.
    assert f"The largest context that fits is {largest:,} tokens" in result.stderr
    assert f"WORKBENCH_MAX_CONTEXT={largest} ./launch.sh --profile h200x4" in result.stderr
    assert "--fit-context" in result.stderr and "eight H200s" in result.stderr
    # That largest context is accepted.
    ok = dry_run(WORKBENCH_PROFILE="h200x4", WORKBENCH_MAX_CONTEXT=str(largest))
    assert ok.returncode == 0 and flag(engine_argv(ok.stdout), "--max-model-len") == str(largest)
    assert (
        dry_run(WORKBENCH_PROFILE="h200x4", WORKBENCH_MAX_CONTEXT=str(largest + 16)).returncode == 2
    )


def test_fit_context_starts_vllm_with_max_model_len_auto():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.engine",
            "plan",
            "--dry-run",
            "--fit-context",
            "--engine-python",
            "/opt/engine/bin/python",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")},
            "WORKBENCH_PROFILE": "h200x4",
        },
    )
    assert result.returncode == 0, result.stderr
    argv = engine_argv(result.stdout)
    assert flag(argv, "--max-model-len") == "auto"
    # The YaRN window of the 700k profile bounds what vLLM may pick.
    assert json.loads(flag(argv, "--hf-overrides"))["max_position_embeddings"] == 786_432
    # No context is exported: the gateway reads the one vLLM chose from the engine.
    assert "WORKBENCH_MAX_CONTEXT" not in result.stdout


def test_native_context_needs_no_yarn():
    argv = h200x4_plan(Settings(profile="h200x4", max_context=200_000)).argv
    assert "--hf-overrides" not in argv
    assert flag(argv, "--max-model-len") == "200000"


def test_cpu_plan_serves_the_embedded_model_as_qwen3(tmp_path):
    plan = cpu_plan(Settings(profile="cpu", data_dir=tmp_path, engine_port=9123), "/e/bin/python")
    assert plan.argv[:3] == ["/e/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert flag(plan.argv, "--model") == str(
        tmp_path.resolve() / "models" / "SmolLM2-135M-Instruct"
    )
    assert flag(plan.argv, "--served-model-name") == "qwen3"
    assert flag(plan.argv, "--port") == "9123"
    assert flag(plan.argv, "--max-model-len") == "32768"
    assert "--enforce-eager" in plan.argv
    assert plan.env["VLLM_CPU_KVCACHE_SPACE"] == "1" and plan.env["HF_HUB_OFFLINE"] == "1"
    assert plan.max_context == 32768
    # Tool choice is served (named and `required` through the JSON-schema path).
    assert "--enable-auto-tool-choice" in plan.argv
    assert flag(plan.argv, "--tool-call-parser") == "hermes"
    assert plan.env["VLLM_ENFORCE_STRICT_TOOL_CALLING"] == "0"
    # SmolLM2's 8,192-token window stretched 4× with YaRN.
    rope = json.loads(flag(plan.argv, "--hf-overrides"))
    assert rope["max_position_embeddings"] == 32768
    assert rope["rope_parameters"] == {
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_theta": 100_000,
    }


def test_cpu_plan_within_the_native_window_needs_no_yarn(tmp_path):
    plan = cpu_plan(Settings(profile="cpu", data_dir=tmp_path, max_context=8192), "python")
    assert flag(plan.argv, "--max-model-len") == "8192" and "--hf-overrides" not in plan.argv
    capped = cpu_plan(Settings(profile="cpu", data_dir=tmp_path, max_context=100_000), "python")
    assert capped.max_context == 32768


def test_external_profile_needs_an_upstream():
    result = dry_run(WORKBENCH_PROFILE="external")
    assert result.returncode == 2
    assert "WORKBENCH_UPSTREAM_URL" in result.stderr
    ok = dry_run(WORKBENCH_PROFILE="external", WORKBENCH_UPSTREAM_URL="http://10.0.0.5:8001")
    assert ok.returncode == 0 and "# engine:" not in ok.stdout


def test_profile_error_is_raised_for_impossible_context():
    with pytest.raises(ProfileError):
        h200x4_plan(Settings(profile="h200x4", max_context=2_000_000))


STAND_IN = str(REPO / "tests" / "qwen3_coder_480b")


def _vllm_reads(engine_python: str, argv: list[str]) -> subprocess.CompletedProcess:
    # Offline, as the engine runs here: nothing may come from a model hub.
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [engine_python, str(REPO / "tests" / "vllm_args.py"), STAND_IN],
        input=json.dumps(argv),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
    )


def test_vllm_takes_the_h200x4_command_and_its_700k_context(engine_python):
    """No GPU here: vLLM's CPU build (same CLI and model-config checks) reads the production
    command, with a stand-in config.json of the 480B model's shape."""
    argv = engine_argv(dry_run(WORKBENCH_PROFILE="h200x4").stdout)
    assert argv[1] == "serve"
    parsed = _vllm_reads(engine_python, argv[2:])
    assert parsed.returncode == 0, parsed.stderr[-2000:]
    assert json.loads(parsed.stdout) == {
        "model_config_max_model_len": 700_000,  # not refused as longer than the model's window
        "model": "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8",
        "served_model_name": ["qwen3"],
        "tensor_parallel_size": 4,
        "enable_expert_parallel": True,
        "kv_cache_dtype": "fp8",
        "max_model_len": 700_000,
        "gpu_memory_utilization": 0.98,
        "max_num_batched_tokens": 4096,
        "max_num_seqs": 16,
        "cudagraph_capture_sizes": [1, 2, 4, 8, 16],
        "enable_prefix_caching": True,
        "hf_overrides": {
            "max_position_embeddings": 786_432,
            "rope_parameters": {
                "rope_type": "yarn",
                "factor": 3.0,
                "original_max_position_embeddings": 262_144,
                "rope_theta": 10_000_000,
            },
        },
        "tool_call_parser": "qwen3_coder",
        "tool_call_parser_known": True,
        "enable_auto_tool_choice": True,
        "enable_prompt_tokens_details": True,
    }


def test_vllm_refuses_what_the_command_must_not_contain(engine_python):
    """The two checks above can fail: an unknown flag, and YaRN without the scaled window."""
    argv = engine_argv(dry_run(WORKBENCH_PROFILE="h200x4").stdout)[2:]
    unknown = _vllm_reads(engine_python, [*argv, "--no-such-flag"])
    assert unknown.returncode != 0 and "--no-such-flag" in unknown.stderr
    overrides = json.loads(flag(argv, "--hf-overrides"))
    del overrides["max_position_embeddings"]
    argv[argv.index("--hf-overrides") + 1] = json.dumps(overrides)
    refused = json.loads(_vllm_reads(engine_python, argv).stdout)
    assert "model_config_max_model_len" not in refused
    assert "greater than the derived max_model_len" in refused["model_config_refused"]


def test_vllm_takes_the_fit_context_command(engine_python):
    """`--fit-context`: vLLM reads `--max-model-len auto` as its auto-fit value (-1) and the
    model config allows up to the YaRN window, which its KV-cache check then shrinks to fit."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")},
        "WORKBENCH_PROFILE": "h200x4",
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.engine",
            "plan",
            "--dry-run",
            "--fit-context",
            "--engine-python",
            "/opt/engine/bin/python",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    parsed = _vllm_reads(engine_python, engine_argv(out)[2:])
    assert parsed.returncode == 0, parsed.stderr[-2000:]
    read = json.loads(parsed.stdout)
    assert read["max_model_len"] == -1
    assert read["model_config_max_model_len"] == 786_432
