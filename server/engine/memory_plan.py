"""GPU memory plan for the production model: what vLLM leaves for the KV cache, and what fits.

vLLM (0.32, `v1/worker/gpu_worker.py` `determine_available_memory`) gives the KV cache, per GPU:

    total memory × --gpu-memory-utilization
      − weights − non-torch memory (NCCL, CUDA graph pools, workspaces)   "total consumed"
      − the torch peak of its profiling run (a forward pass of max_num_batched_tokens,
        then the sampler over min(tokens, max_num_seqs) rows)               "peak activation"
      − the CUDA-graph estimate (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1, default since 0.21)

and refuses to start when one request of `--max-model-len` tokens does not fit in what is left
(`v1/core/kv_cache_utils.py` `_check_enough_kv_cache_memory`). This module models each term from
the checkpoint's tensor shapes and named constants, each with its source; `docs/memory.md` walks
through the arithmetic and the data points it reproduces (`tests/test_memory_plan.py`).
"""

import math
from dataclasses import dataclass, field

GIB = 1024**3
MIB = 1024**2

# nvidia-smi reports 143,771 MiB for an H200 (141 GB HBM3e). H20-3e is the same 141 GB part:
# vLLM recipes PR #12's two runs differ by 6.99 GiB of KV for 0.05 of utilization, i.e.
# 139.8 ± 0.4 GiB in total, consistent with the same size.
H200_MEMORY_BYTES = 143_771 * MIB
KV_DTYPE_BYTES = {"fp8": 1, "bf16": 2, "auto": 2}
# vLLM's KV block on CUDA is 16 tokens and its maximum length is a whole number of blocks
# (recipes PR #12: "estimated maximum model length is 205728" = 16 × 12,858).
BLOCK_TOKENS = 16
# Non-torch memory per GPU (NCCL communicators and buffers, custom all-reduce, cuBLAS
# workspaces, CUDA-graph pools), which vLLM measures and no config names. Fitted, not derived:
# with tensor parallel, to the 4×H200 TP 2 × PP 2 report (utilization 0.98, vLLM defaults
# otherwise; 760,000 tokens were "1.54 GiB short", so 20.93 GiB of KV: every other term of
# this model subtracted leaves 2.00 GiB); data parallel ranks (TP 1, no all-reduce) to vLLM
# recipes PR #12 (8×H20, DP 8 + EP, 48.66 GiB of KV at 0.90 leaves 0.22 GiB).
NON_TORCH_TP_BYTES = int(2.00 * GIB)
NON_TORCH_DP_BYTES = int(0.22 * GIB)
# The sampler's dummy run holds fp32 logits of min(tokens, max_num_seqs) rows over the vocab,
# about three times over (logits, probabilities, log-probabilities):
# `gpu_model_runner.py` `profile_run` → `_dummy_sampler_run`.
SAMPLER_FLOAT32_COPIES = 3
# Each token of the profiling pass keeps its residual stream, normed input and layer output
# alive at once (bf16, hidden size each).
RESIDUAL_COPIES = 3
# CUDA-graph memory per captured graph and model layer, from a published vLLM 0.2x log
# (LMCache issue #3430, Qwen3-8B, 36 layers: "PIECEWISE=51 (largest=512), FULL=35
# (largest=256)" → "Estimated CUDA graph memory: 0.52 GiB total").
CUDAGRAPH_BYTES_PER_GRAPH_LAYER = 0.52 * GIB / ((51 + 35) * 36)
# vLLM's default ceiling of capture sizes on Hopper (`config/vllm.py`: 512, 1024 on Blackwell).
DEFAULT_MAX_CAPTURE_SIZE = 512


@dataclass(frozen=True)
class ModelShape:
    """The facts about a model that size its weights, activations and KV cache."""

    layers: int
    hidden: int
    q_heads: int
    kv_heads: int
    head_dim: int
    experts: int
    experts_per_token: int
    moe_intermediate: int
    vocab: int
    native_context: int

    def kv_bytes_per_token(self, kv_dtype: str) -> int:
        """K and V of every layer for one token, on all GPUs together."""
        return self.layers * self.kv_heads * self.head_dim * 2 * KV_DTYPE_BYTES[kv_dtype]


# Qwen3-Coder-480B-A35B-Instruct's config.json (tests/qwen3_coder_480b/config.json).
QWEN3_CODER_480B = ModelShape(
    layers=62,
    hidden=6144,
    q_heads=96,
    kv_heads=8,
    head_dim=128,
    experts=160,
    experts_per_token=8,
    moe_intermediate=2560,
    vocab=151_936,
    native_context=262_144,
)
# The FP8 checkpoint: attention and expert matrices in FP8 with fp32 scales per 128×128 block;
# embeddings, lm_head, router gates and norms in BF16 (its safetensors index and
# config.json's quantization_config). Its shapes give 482.2 GB = 449.1 GiB, its files' size.
FP8_BYTES, BF16_BYTES, SCALE_BYTES, SCALE_BLOCK = 1, 2, 4, 128


@dataclass(frozen=True)
class Layout:
    """How the model is split: tensor × pipeline × data parallel, experts split or not."""

    tp: int
    pp: int = 1
    dp: int = 1
    expert_parallel: bool = True

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp

    def describe(self) -> str:
        parts = [f"TP {self.tp}"] + [f"PP {self.pp}"] * (self.pp > 1)
        parts += [f"DP {self.dp}"] * (self.dp > 1)
        return " × ".join(parts) + (" + EP" if self.expert_parallel else "")


@dataclass(frozen=True)
class EngineSettings:
    """The vLLM options that move memory between the KV cache and everything else."""

    utilization: float
    kv_dtype: str = "fp8"
    max_num_batched_tokens: int = 8192  # vLLM's API-server default on ≥70 GiB GPUs
    max_num_seqs: int = 1024  # same source: `engine/arg_utils.py` default_max_num_seqs
    capture_sizes: tuple[int, ...] | None = None  # None: vLLM's default list
    estimate_cudagraphs: bool = True  # VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS


def default_capture_sizes(max_num_seqs: int, max_num_batched_tokens: int) -> list[int]:
    """vLLM's default CUDA-graph capture sizes (`config/vllm.py`, no speculative decoding)."""
    top = min(max_num_seqs * 2, DEFAULT_MAX_CAPTURE_SIZE, max_num_batched_tokens)
    sizes = [s for s in (1, 2, 4) if s <= top]
    sizes += list(range(8, min(top + 1, 256), 8)) if top >= 8 else []
    sizes += list(range(256, top + 1, 16)) if top >= 256 else []
    if max_num_batched_tokens <= top:
        sizes.append(max_num_batched_tokens)
    if max_num_seqs <= top:
        sizes.append(max_num_seqs)
    return sorted(set(sizes))


def weights_bytes_per_gpu(shape: ModelShape, layout: Layout) -> int:
    """The FP8 checkpoint's bytes on the most loaded GPU (the last pipeline stage)."""
    h, i, e = shape.hidden, shape.moe_intermediate, shape.experts
    attention = (2 * h * shape.q_heads + 2 * h * shape.kv_heads) * shape.head_dim * FP8_BYTES
    expert_scales = 3 * (h // SCALE_BLOCK) * (i // SCALE_BLOCK) * SCALE_BYTES
    experts = e * (3 * h * i * FP8_BYTES + expert_scales)
    expert_split = layout.tp * layout.dp if layout.expert_parallel else layout.tp
    gate_and_norms = h * e * BF16_BYTES + 2 * h * BF16_BYTES  # replicated on every rank
    per_layer = experts / expert_split + attention / layout.tp + gate_and_norms
    embedding = shape.vocab * h * BF16_BYTES / layout.tp  # vocab-parallel; lm_head the same
    vocab_tables = embedding * (2 if layout.pp == 1 else 1)
    return int(math.ceil(shape.layers / layout.pp) * per_layer + vocab_tables)


def _forward_bytes_per_token(shape: ModelShape, layout: Layout) -> tuple[int, int]:
    """Activation bytes per batched token: (dense part, MoE part). The MoE part counts vLLM's
    fused-MoE workspaces (`fused_moe.py`: intermediate_cache13 of max(2·I, hidden) and
    intermediate_cache2 of I per routed copy, bf16)."""
    tp = layout.tp
    qkv = (shape.q_heads + 2 * shape.kv_heads) * shape.head_dim // tp
    attention_out = shape.q_heads * shape.head_dim // tp
    dense = (RESIDUAL_COPIES * shape.hidden + qkv + attention_out) * BF16_BYTES
    inter = shape.moe_intermediate if layout.expert_parallel else shape.moe_intermediate // tp
    moe = shape.experts_per_token * (max(2 * inter, shape.hidden) + inter) * BF16_BYTES
    return dense, moe


def activation_peak_bytes(shape: ModelShape, layout: Layout, settings: EngineSettings) -> int:
    """The torch peak of vLLM's profiling run, above the weights."""
    tokens = settings.max_num_batched_tokens
    dense, moe = _forward_bytes_per_token(shape, layout)
    # Data parallel with experts split gathers every rank's tokens before the experts.
    moe_tokens = tokens * layout.dp
    gathered = moe_tokens * shape.hidden * BF16_BYTES if layout.dp > 1 else 0
    forward = tokens * dense + moe_tokens * moe + gathered
    rows = min(tokens, settings.max_num_seqs)
    sampler = rows * shape.vocab * 4 * SAMPLER_FLOAT32_COPIES
    return max(forward, sampler)


def cudagraph_bytes(shape: ModelShape, layout: Layout, settings: EngineSettings) -> int:
    """vLLM's CUDA-graph estimate: PIECEWISE graphs for every capture size, FULL decode graphs
    for sizes up to max_num_seqs (FULL_AND_PIECEWISE, the default mode); the largest graph
    holds its batch's activations (`gpu_model_runner.py` `profile_cudagraph_memory`)."""
    if not settings.estimate_cudagraphs:
        return 0
    sizes = settings.capture_sizes or tuple(
        default_capture_sizes(settings.max_num_seqs, settings.max_num_batched_tokens)
    )
    graphs = len(sizes) + len([s for s in sizes if s <= settings.max_num_seqs])
    layers = math.ceil(shape.layers / layout.pp)
    dense, moe = _forward_bytes_per_token(shape, layout)
    return int(graphs * layers * CUDAGRAPH_BYTES_PER_GRAPH_LAYER + max(sizes) * (dense + moe))


@dataclass
class MemoryPlan:
    """Every term of one GPU's memory, the KV cache left, and whether a context fits."""

    context: int
    layout: Layout
    settings: EngineSettings
    gpu_bytes: int
    budget: int
    weights: int
    non_torch: int
    activation: int
    cudagraphs: int
    kv_per_token_per_gpu: int
    notes: list[str] = field(default_factory=list)

    @property
    def kv_available(self) -> int:
        return self.budget - self.weights - self.non_torch - self.activation - self.cudagraphs

    @property
    def kv_needed(self) -> int:
        return _blocks(self.context) * BLOCK_TOKENS * self.kv_per_token_per_gpu

    @property
    def margin(self) -> int:
        return self.kv_available - self.kv_needed

    @property
    def max_tokens(self) -> int:
        """The longest context that fits: what vLLM logs as its estimated maximum length."""
        block = BLOCK_TOKENS * self.kv_per_token_per_gpu
        return max(0, self.kv_available // block * BLOCK_TOKENS)

    @property
    def fits(self) -> bool:
        return self.margin >= 0

    def lines(self) -> list[str]:
        """The arithmetic, one term a line, as `launch.sh --dry-run` prints it."""
        s = self.settings
        verdict = "fits" if self.fits else "DOES NOT FIT"
        rows = [
            ("GPU memory", self.gpu_bytes, ""),
            (f"× utilization {s.utilization}", self.budget, ""),
            ("− weights (FP8 checkpoint's share)", self.weights, ""),
            ("− non-torch (NCCL, workspaces)", self.non_torch, ""),
            (
                "− activation peak",
                self.activation,
                f"{s.max_num_batched_tokens:,} batched tokens, {s.max_num_seqs} sequences",
            ),
            ("− CUDA-graph estimate", self.cudagraphs, _graphs(s)),
            (
                "= KV cache",
                self.kv_available,
                f"{self.kv_per_token_per_gpu:,} B/token: at most {self.max_tokens:,} tokens",
            ),
            (f"− one {self.context:,}-token request", self.kv_needed, ""),
            ("= margin", self.margin, verdict),
        ]
        head = (
            f"memory plan per GPU ({self.layout.gpus} GPUs, {self.layout.describe()}, "
            f"KV cache {s.kv_dtype}):"
        )
        return [head] + [
            f"  {label:<36}{value / GIB:8.2f} GiB" + (f"  ({why})" if why else "")
            for label, value, why in rows
        ]


def _graphs(settings: EngineSettings) -> str:
    if not settings.estimate_cudagraphs:
        return "not estimated"
    sizes = settings.capture_sizes
    return f"capture sizes {list(sizes)}" if sizes else "vLLM's default capture sizes"


def _blocks(tokens: int) -> int:
    return -(-tokens // BLOCK_TOKENS)


def kv_bytes_per_token_per_gpu(shape: ModelShape, layout: Layout, kv_dtype: str) -> int:
    """One token's K and V on one GPU: layers split by PP, KV heads by TP (replicated when
    TP exceeds the KV heads)."""
    heads = max(1, shape.kv_heads // layout.tp)
    layers = math.ceil(shape.layers / layout.pp)
    return layers * heads * shape.head_dim * 2 * KV_DTYPE_BYTES[kv_dtype]


def plan_memory(
    context: int,
    layout: Layout,
    settings: EngineSettings,
    shape: ModelShape = QWEN3_CODER_480B,
    gpu_bytes: int = H200_MEMORY_BYTES,
) -> MemoryPlan:
    """Model vLLM's split of one GPU's memory for `context` tokens under these settings."""
    return MemoryPlan(
        context=context,
        layout=layout,
        settings=settings,
        gpu_bytes=gpu_bytes,
        # vLLM: requested_memory = ceil(total × utilization) (`v1/worker/utils.py`)
        budget=math.ceil(gpu_bytes * settings.utilization),
        weights=weights_bytes_per_gpu(shape, layout),
        non_torch=NON_TORCH_TP_BYTES if layout.tp > 1 else NON_TORCH_DP_BYTES,
        activation=activation_peak_bytes(shape, layout, settings),
        cudagraphs=cudagraph_bytes(shape, layout, settings),
        kv_per_token_per_gpu=kv_bytes_per_token_per_gpu(shape, layout, settings.kv_dtype),
    )


def yarn_factor(
    context: int, native_context: int = QWEN3_CODER_480B.native_context
) -> float | None:
    """The YaRN scaling factor a context needs (None when it fits the native window)."""
    if context <= native_context:
        return None
    return float(math.ceil(context / native_context))
