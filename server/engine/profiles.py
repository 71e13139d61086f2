"""Engine profiles: which vLLM to start and with exactly which flags."""

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from server.engine.memory_plan import (
    GIB,
    QWEN3_CODER_480B,
    EngineSettings,
    Layout,
    MemoryPlan,
    plan_memory,
    yarn_factor,
)
from server.settings import SERVED_MODEL_NAME, Settings

PRODUCTION_MODEL = "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8"
PRODUCTION_CONTEXT = 700_000
PRODUCTION_ROPE_THETA = 10_000_000
EMBEDDED_MODEL_DIRNAME = "SmolLM2-135M-Instruct"
# SmolLM2-135M's trained window, stretched with YaRN to what a coding agent's first request
# needs: Claude Code's is about 24k tokens (its system prompt and tool definitions).
EMBEDDED_NATIVE_CONTEXT = 8192
EMBEDDED_ROPE_THETA = 100_000
EMBEDDED_CONTEXT = 32_768
REPLICA_MIDDLEWARE = "server.engine.replica_header.ReplicaHeader"
REPO_ROOT = Path(__file__).resolve().parents[2]


class ProfileError(Exception):
    """A profile cannot start as asked (bad context, missing upstream, ...)."""


@dataclass
class EnginePlan:
    """What launch.sh starts for a profile: an engine command (or none) and the context it
    serves."""

    profile: str
    max_context: int | None
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    model_dir: Path | None = None


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def listen_args(settings: Settings) -> list[str]:
    """Where an engine listens (WORKBENCH_ENGINE_HOST:PORT), and the replica middleware that
    names it in every answer. Beyond loopback only with an engine secret: vLLM's /v1 would
    otherwise serve anyone who reaches the port."""
    if settings.engine_host not in LOOPBACK_HOSTS and not settings.engine_key:
        raise ProfileError(
            f"WORKBENCH_ENGINE_HOST={settings.engine_host} reaches beyond this machine: set "
            "WORKBENCH_ENGINE_KEY (the engine secret the gateway sends) as well."
        )
    return [
        "--host",
        settings.engine_host,
        "--port",
        str(settings.engine_port),
        "--middleware",
        REPLICA_MIDDLEWARE,
    ]


def engine_env(settings: Settings) -> dict[str, str]:
    """What every engine needs in its environment: this repository on the path (for the
    replica middleware; `vllm serve` does not look in the working directory), and the engine
    secret as vLLM reads it (an env var, not a flag: argv is public in ps)."""
    env = {"PYTHONPATH": str(REPO_ROOT)}
    if settings.engine_key:
        env["VLLM_API_KEY"] = settings.engine_key
    return env


def detect_profile() -> str:
    """`h200x4` when nvidia-smi lists at least four GPUs, else `cpu`."""
    if shutil.which("nvidia-smi") is None:
        return "cpu"
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "cpu"
    gpus = [line for line in out.splitlines() if line.startswith("GPU ")]
    return "h200x4" if len(gpus) >= 4 else "cpu"


def embedded_model_dir(settings: Settings) -> Path:
    return (settings.data_dir / "models" / EMBEDDED_MODEL_DIRNAME).resolve()


# Four H200s as one engine: tensor parallel 4 with the experts split (TP 8 fails for this FP8
# checkpoint, 320 not divisible by 128; TP 6 fails on the vocab).
H200X4_LAYOUT = Layout(tp=4, expert_parallel=True)
# Eight H200s, for the refusal's "what would give more": the same TP 4 twice, pipelined.
H200X8_LAYOUT = Layout(tp=4, pp=2, expert_parallel=True)
# The settings that make 700,000 tokens fit (docs/memory.md has the arithmetic). The lever is
# the utilization plus smaller transients, not --kv-cache-memory-bytes: with a fixed KV size
# vLLM skips its own check, so a wrong estimate becomes an out-of-memory error under load,
# whereas with a utilization vLLM measures the real peak and refuses at start-up with numbers
# that launch.sh turns into advice (server/engine/startup_failure.py).
H200X4_SETTINGS = EngineSettings(
    # The TP 2 × PP 2 report started 707k tokens at 0.98; 2.8 GiB per GPU stay outside vLLM's
    # budget for the CUDA context, which takes about 0.5 GiB before vLLM measures.
    utilization=0.98,
    kv_dtype="fp8",
    # 4,096 instead of 8,192: the profiling peak falls from 1.45 to 0.72 GiB per GPU
    # (≈24k more tokens); a 700k prompt is prefilled in 171 chunks instead of 86.
    max_num_batched_tokens=4096,
    # The reference's 10 concurrent requests plus room; the sampler's profiling peak is 16 rows
    # of logits instead of 1,024 (1.74 GiB of fp32 logits per GPU).
    max_num_seqs=16,
    # Decode batches up to max_num_seqs: 10 graphs (5 sizes, PIECEWISE and FULL) instead of
    # vLLM's default 102 (51 sizes up to 512): ≈0.11 GiB instead of ≈1.15 GiB per GPU.
    capture_sizes=(1, 2, 4, 8, 16),
)


def h200x4_memory(context: int) -> MemoryPlan:
    """The memory plan of the h200x4 profile for one context."""
    return plan_memory(context, H200X4_LAYOUT, H200X4_SETTINGS)


def _refusal(memory: MemoryPlan) -> str:
    """Why a context cannot start on four H200s, and what would give more."""
    eight = plan_memory(memory.context, H200X8_LAYOUT, H200X4_SETTINGS)
    short = -memory.margin / GIB
    return (
        f"A context of {memory.context:,} tokens does not fit on 4×H200: one request needs "
        f"{memory.kv_needed / GIB:.2f} GiB of KV cache per GPU and {memory.kv_available / GIB:.2f}"
        f" GiB is left after every reserve ({short:.2f} GiB short).\n"
        + "\n".join(memory.lines())
        + f"\nThe largest context that fits is {memory.max_tokens:,} tokens: start with "
        f"WORKBENCH_MAX_CONTEXT={memory.max_tokens} ./launch.sh --profile h200x4, or with "
        "./launch.sh --profile h200x4 --fit-context to let vLLM measure and take the longest "
        f"it can hold. More needs more GPUs: eight H200s ({H200X8_LAYOUT.describe()}) leave KV "
        f"room for about {eight.max_tokens:,} tokens (the model's card gives 1,000,000 with "
        "YaRN as its reach)."
    )


def h200x4_plan(settings: Settings, engine_python: str = "vllm", fit: bool = False) -> EnginePlan:
    """The production command; refuses a context the four H200s cannot hold. `fit` starts vLLM
    with `--max-model-len auto` instead: it takes the longest context its memory holds (up to
    the YaRN window) and the gateway reads that length from the engine."""
    context = settings.max_context or PRODUCTION_CONTEXT
    memory = h200x4_memory(context)
    if not fit and not memory.fits:
        raise ProfileError(_refusal(memory))
    s = H200X4_SETTINGS
    argv = [
        engine_python,
        "serve",
        PRODUCTION_MODEL,
        "--served-model-name",
        SERVED_MODEL_NAME,
        *listen_args(settings),
        "--tensor-parallel-size",
        str(H200X4_LAYOUT.tp),
        "--enable-expert-parallel",
        "--kv-cache-dtype",
        s.kv_dtype,
        "--max-model-len",
        "auto" if fit else str(context),
        "--gpu-memory-utilization",
        str(s.utilization),
        "--max-num-batched-tokens",
        str(s.max_num_batched_tokens),
        "--max-num-seqs",
        str(s.max_num_seqs),
        "--compilation-config",
        json.dumps({"cudagraph_capture_sizes": list(s.capture_sizes)}, separators=(",", ":")),
        "--enable-prefix-caching",
        # Reports cached prompt tokens in usage, so a second question on a document shows the hit.
        "--enable-prompt-tokens-details",
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "qwen3_coder",
    ]
    factor = yarn_factor(PRODUCTION_CONTEXT if fit else context)
    if factor is not None:
        # Transformers' YaRN convention, which vLLM follows: max_position_embeddings is the
        # scaled window (vLLM derives the longest allowed context from it, without applying
        # the factor again) and original_max_position_embeddings the trained one; their
        # ratio is the factor. Overriding only the rope parameters leaves 262,144 as the
        # limit and vLLM refuses --max-model-len 700000 at start-up.
        rope = {
            "max_position_embeddings": int(QWEN3_CODER_480B.native_context * factor),
            "rope_parameters": {
                "rope_type": "yarn",
                "factor": factor,
                "original_max_position_embeddings": QWEN3_CODER_480B.native_context,
                "rope_theta": PRODUCTION_ROPE_THETA,
            },
        }
        argv += ["--hf-overrides", json.dumps(rope, separators=(",", ":"))]
    notes = memory.lines()
    if fit:
        notes.append(
            "--fit-context: vLLM takes the longest context its measured memory holds "
            f"(this plan expects {memory.max_tokens:,} tokens)"
        )
    return EnginePlan(
        profile="h200x4",
        max_context=None if fit else context,
        argv=argv,
        env=engine_env(settings),
        notes=notes,
    )


def cpu_plan(settings: Settings, engine_python: str) -> EnginePlan:
    """The embedded profile: vLLM's CPU build serving the bundled SmolLM2 as `qwen3`."""
    context = min(settings.max_context or EMBEDDED_CONTEXT, EMBEDDED_CONTEXT)
    model_dir = embedded_model_dir(settings)
    argv = [
        engine_python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        SERVED_MODEL_NAME,
        *listen_args(settings),
        "--max-model-len",
        str(context),
        "--dtype",
        "bfloat16",
        # Eager mode starts in ≈25 s instead of ≈110 s compiled; speed is not the point here.
        "--enforce-eager",
        "--enable-prefix-caching",
        "--enable-prompt-tokens-details",
        "--disable-uvicorn-access-log",
        # Tool calls: SmolLM2 writes Hermes-style <tool_call> JSON; named and `required` tool
        # choice are constrained by structured outputs either way.
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "hermes",
    ]
    factor = yarn_factor(context, EMBEDDED_NATIVE_CONTEXT)
    if factor is not None:
        # As for h200x4: the scaled window in max_position_embeddings, the trained one in
        # the rope parameters (32,768 = factor 4 over 8,192).
        rope = {
            "max_position_embeddings": int(EMBEDDED_NATIVE_CONTEXT * factor),
            "rope_parameters": {
                "rope_type": "yarn",
                "factor": factor,
                "original_max_position_embeddings": EMBEDDED_NATIVE_CONTEXT,
                "rope_theta": EMBEDDED_ROPE_THETA,
            },
        }
        argv += ["--hf-overrides", json.dumps(rope, separators=(",", ":"))]
    env = {
        # 1 GiB holds 46,000 tokens of SmolLM2's KV cache (30 layers × 3 KV heads × 64 × 2 ×
        # bf16 = 23,040 bytes a token): one full 32,768-token request and change.
        "VLLM_CPU_KVCACHE_SPACE": "1",
        # Named and `required` tool choice through vLLM's strict structural tags made the
        # arguments a bare string ("Paris"); the JSON-schema path gives {"city": "Paris"}.
        "VLLM_ENFORCE_STRICT_TOOL_CALLING": "0",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        **engine_env(settings),
    }
    return EnginePlan(
        profile="cpu",
        max_context=context,
        argv=argv,
        env=env,
        model_dir=model_dir,
        notes=[f"embedded model {model_dir} (SmolLM2-135M-Instruct served as {SERVED_MODEL_NAME})"],
    )


def external_plan(settings: Settings) -> EnginePlan:
    if settings.replica_urls:
        return EnginePlan(
            profile="external",
            max_context=settings.max_context,
            notes=[
                f"no engine started; vllm-router at {settings.upstream} in front of "
                + " ".join(settings.replica_urls)
            ],
        )
    if not settings.upstream_url:
        raise ProfileError(
            "Profile 'external' needs WORKBENCH_UPSTREAM_URL (e.g. http://gpu-host:8001)"
            " or WORKBENCH_UPSTREAM_URLS (several engines)."
        )
    return EnginePlan(
        profile="external",
        max_context=settings.max_context,
        notes=[f"no engine started; using {settings.upstream}"],
    )


def make_plan(
    settings: Settings, engine_python: str = sys.executable, fit: bool = False
) -> EnginePlan:
    """Resolve `auto` and build the plan for the chosen profile (`fit`: see `h200x4_plan`)."""
    profile = settings.profile if settings.profile != "auto" else detect_profile()
    if settings.replica_urls and profile != "external":
        if settings.profile != "auto":
            raise ProfileError(
                f"WORKBENCH_UPSTREAM_URLS names engines elsewhere: profile "
                f"{profile} would start one here too (use ./launch.sh engine)."
            )
        profile = "external"
    if profile == "h200x4":
        return h200x4_plan(settings, str(Path(engine_python).with_name("vllm")), fit)
    if profile == "cpu":
        return cpu_plan(settings, engine_python)
    return external_plan(settings)
