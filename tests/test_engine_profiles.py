"""The engine command for each profile, as `launch.sh --dry-run` prints it."""

import json
import os
import shlex
import subprocess
import sys

import pytest

from server.engine.kv_cache import plan_kv_cache, yarn_factor
from server.engine.profiles import ProfileError, cpu_plan, h200x4_plan
from server.settings import Settings
from tests.harness import REPO


def dry_run(**env) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "server.engine", "plan", "--dry-run",
         "--engine-python", "/opt/engine/bin/python"],
        cwd=REPO, env=full, capture_output=True, text=True, timeout=60,
    )


def engine_argv(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    return shlex.split(lines[lines.index("# engine:") + 1])


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
    assert flag(argv, "--gpu-memory-utilization") == "0.95"
    assert flag(argv, "--tool-call-parser") == "qwen3_coder"
    for switch in ("--enable-expert-parallel", "--enable-prefix-caching", "--enable-auto-tool-choice"):
        assert switch in argv
    assert json.loads(flag(argv, "--hf-overrides")) == {
        "max_position_embeddings": 786432,  # the scaled window: 262,144 x 3
        "rope_parameters": {
            "rope_type": "yarn",
            "factor": 3.0,
            "original_max_position_embeddings": 262144,
            "rope_theta": 10000000,
        }
    }
    assert "124 KiB" in result.stdout and "fits" in result.stdout
    assert "WORKBENCH_PROFILE=h200x4 WORKBENCH_MAX_CONTEXT=700000" in result.stdout


def test_h200x4_refuses_a_context_that_cannot_fit():
    result = dry_run(WORKBENCH_PROFILE="h200x4", WORKBENCH_MAX_CONTEXT="1000000")
    assert result.returncode == 2
    assert "does not fit on 4×H200" in result.stderr
    assert "at most 710,325" in result.stderr
    assert result.stdout == ""


def test_native_context_needs_no_yarn():
    argv = h200x4_plan(Settings(profile="h200x4", max_context=200_000)).argv
    assert "--hf-overrides" not in argv
    assert flag(argv, "--max-model-len") == "200000"


def test_kv_cache_arithmetic_matches_the_model_facts():
    fp8 = plan_kv_cache(700_000, "fp8")
    bf16 = plan_kv_cache(700_000, "bf16")
    assert fp8.bytes_per_token == 62 * 8 * 128 * 2 == 126_976
    assert bf16.bytes_per_token == 2 * fp8.bytes_per_token
    assert round(fp8.total_gib, 1) == 82.8 and round(fp8.per_gpu_gib, 1) == 20.7
    assert round(bf16.total_gib, 1) == 165.6 and round(bf16.per_gpu_gib, 1) == 41.4
    assert fp8.fits and not bf16.fits
    assert yarn_factor(262_144) is None and yarn_factor(262_145) == 2.0 and yarn_factor(700_000) == 3.0


def test_cpu_plan_serves_the_embedded_model_as_qwen3(tmp_path):
    plan = cpu_plan(Settings(profile="cpu", data_dir=tmp_path, engine_port=9123), "/e/bin/python")
    assert plan.argv[:3] == ["/e/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert flag(plan.argv, "--model") == str(tmp_path.resolve() / "models" / "SmolLM2-135M-Instruct")
    assert flag(plan.argv, "--served-model-name") == "qwen3"
    assert flag(plan.argv, "--port") == "9123"
    assert flag(plan.argv, "--max-model-len") == "8192"
    assert "--enforce-eager" in plan.argv
    assert plan.env["VLLM_CPU_KVCACHE_SPACE"] == "1" and plan.env["HF_HUB_OFFLINE"] == "1"
    assert plan.max_context == 8192


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
        input=json.dumps(argv), capture_output=True, text=True, timeout=300, cwd=REPO, env=env,
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
        "gpu_memory_utilization": 0.95,
        "enable_prefix_caching": True,
        "hf_overrides": {
            "max_position_embeddings": 786_432,
            "rope_parameters": {
                "rope_type": "yarn", "factor": 3.0, "original_max_position_embeddings": 262_144,
                "rope_theta": 10_000_000},
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
