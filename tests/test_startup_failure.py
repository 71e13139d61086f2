"""vLLM's start-up refusal for lack of KV-cache memory, as launch.sh explains it.

The message is produced by the installed vLLM itself (its `_check_enough_kv_cache_memory`, and
a real CPU engine that refuses), never typed here: a vLLM upgrade that changes the wording
fails these tests instead of silently losing the advice.
"""

import json
import subprocess
import sys
from pathlib import Path

from server.engine.startup_failure import advice, parse
from tests.harness import REPO, ManagedProcess, base_env, free_port

GIB = 1024**3

_RAISE = """
import json, sys
from vllm.v1.core.kv_cache_utils import _check_enough_kv_cache_memory
available, needed, asked, estimated = json.loads(sys.argv[1])
try:
    _check_enough_kv_cache_memory(available, lambda: needed, asked, lambda _: estimated)
except ValueError as exc:
    print(exc)
"""


def vllm_message(
    engine_python: str, available: int, needed: int, asked: int, estimated: int
) -> str:
    """The exact text the installed vLLM raises for these numbers."""
    out = subprocess.run(
        [engine_python, "-c", _RAISE, json.dumps([available, needed, asked, estimated])],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout.strip()
    assert out, "the installed vLLM did not refuse"
    return out


def as_engine_log(message: str) -> str:
    """The message where vLLM puts it: the last line of the engine core's traceback."""
    return (
        "(EngineCore_DP0 pid=4242) INFO 12-01 10:00:00 [gpu_worker.py:760] Available KV cache "
        "memory: 19.8 GiB\n"
        "(EngineCore_DP0 pid=4242) ERROR 12-01 10:00:01 [core.py:850] EngineCore failed to start.\n"
        "(EngineCore_DP0 pid=4242) Traceback (most recent call last):\n"
        '(EngineCore_DP0 pid=4242)   File "/venv/vllm/v1/core/kv_cache_utils.py", line 1031\n'
        f"(EngineCore_DP0 pid=4242) ValueError: {message}\n"
        "RuntimeError: Engine core initialization failed. See root cause above.\n"
    )


def test_the_installed_vllm_message_is_parsed_and_explained(engine_python):
    available, needed = int(19.8 * GIB), 700_000 * 31_744
    text = vllm_message(engine_python, available, needed, 700_000, 669_712)
    refusal = parse(as_engine_log(text))
    assert refusal is not None
    assert (refusal.asked, refusal.needed_gib, refusal.available_gib, refusal.estimated) == (
        700_000,
        20.69,
        19.8,
        669_712,
    )
    paragraph = advice(refusal, "h200x4")
    assert "\n" not in paragraph
    for quoted in (
        "700,000 tokens",
        "20.69 GiB",
        "19.8 GiB",
        "669,712 tokens",
        "WORKBENCH_MAX_CONTEXT=669712 ./launch.sh --profile h200x4",
        "./launch.sh --profile h200x4 --fit-context",
    ):
        assert quoted in paragraph


def test_without_an_estimate_or_without_memory_the_advice_says_so(engine_python):
    # vLLM leaves out its estimate when not even one token fits.
    refusal = parse(vllm_message(engine_python, GIB, 2 * GIB, 700_000, 0))
    assert refusal is not None and refusal.estimated == 0 and refusal.needed_gib == 2.0
    assert "no memory is left for the KV cache" in advice(refusal, "h200x4")
    nothing = parse(vllm_message(engine_python, 0, GIB, 700_000, 0))
    assert nothing is not None and "gpu-memory-utilization" in advice(nothing, "h200x4")


def test_other_deaths_get_no_paragraph(tmp_path):
    log = tmp_path / "engine.log"
    log.write_text("RuntimeError: CUDA error: out of memory\n")
    result = subprocess.run(
        [sys.executable, "-m", "server.engine.startup_failure", str(log)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and result.stdout == ""


def test_a_real_engine_that_refuses_is_explained(tmp_path, model_dir: Path, engine_python):
    """The CPU engine with 1 GiB of KV space asked for 100,000 tokens of SmolLM2 (22.5 KiB of
    KV per token: 30 layers × 3 KV heads × 64 × 2 × bf16) refuses exactly as on GPUs."""
    port = free_port()
    log = tmp_path / "engine.log"
    env = base_env(VLLM_CPU_KVCACHE_SPACE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
    engine = ManagedProcess(
        [
            engine_python,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model_dir),
            "--served-model-name",
            "qwen3",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dtype",
            "bfloat16",
            "--enforce-eager",
            "--max-model-len",
            "100000",
            "--hf-overrides",
            '{"max_position_embeddings": 100000}',
        ],
        env=env,
        log_path=log,
    )
    try:
        engine.proc.wait(timeout=600)
    finally:
        engine.stop()
    result = subprocess.run(
        [sys.executable, "-m", "server.engine.startup_failure", str(log), "--profile", "cpu"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, log.read_text()[-3000:]
    refusal = parse(log.read_text())
    fits = GIB // (30 * 3 * 64 * 2 * 2)  # 46,603 tokens of KV in 1 GiB
    assert refusal.asked == 100_000 and refusal.available_gib == 1.0
    # Whole blocks only, 128 tokens a block on the CPU backend (16 on CUDA); seen: 46,464.
    assert fits - 2 * 128 < refusal.estimated <= fits and refusal.estimated % 128 == 0
    assert f"WORKBENCH_MAX_CONTEXT={refusal.estimated} ./launch.sh --profile cpu" in result.stdout
    assert "--fit-context" not in result.stdout
