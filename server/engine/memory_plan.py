"""KV-cache arithmetic for the production profile: what a context costs and whether it fits."""

import math
from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True)
class ModelShape:
    """The facts about a model that size its KV cache."""

    layers: int
    kv_heads: int
    head_dim: int
    native_context: int


@dataclass(frozen=True)
class GpuBudget:
    """Memory of one GPU and what the weights take of it (tensor parallel splits the weights)."""

    gpus: int
    memory_gib: float
    weights_gib_per_gpu: float
    utilization: float


QWEN3_CODER_480B = ModelShape(layers=62, kv_heads=8, head_dim=128, native_context=262_144)
# FP8 weights of the 480B model are ≈448 GiB, so ≈112 GiB on each of four 140 GiB H200s.
H200X4 = GpuBudget(gpus=4, memory_gib=140.0, weights_gib_per_gpu=112.0, utilization=0.95)
KV_DTYPE_BYTES = {"fp8": 1, "bf16": 2, "auto": 2}


@dataclass(frozen=True)
class KvPlan:
    """The KV-cache cost of one context on one GPU set, and the verdict."""

    context: int
    kv_dtype: str
    bytes_per_token: int
    total_gib: float
    per_gpu_gib: float
    free_per_gpu_gib: float
    max_tokens: int

    @property
    def fits(self) -> bool:
        return self.context <= self.max_tokens

    def describe(self) -> str:
        verdict = "fits" if self.fits else "DOES NOT FIT"
        return (
            f"KV cache ({self.kv_dtype}): {self.bytes_per_token:,} bytes/token "
            f"({self.bytes_per_token / 1024:.0f} KiB); {self.context:,} tokens need "
            f"{self.total_gib:.1f} GiB in total, {self.per_gpu_gib:.1f} GiB per GPU; "
            f"{self.free_per_gpu_gib:.1f} GiB per GPU is left after weights "
            f"-> at most {self.max_tokens:,} tokens: {verdict}"
        )


def plan_kv_cache(
    context: int,
    kv_dtype: str = "fp8",
    shape: ModelShape = QWEN3_CODER_480B,
    budget: GpuBudget = H200X4,
) -> KvPlan:
    """Compute the KV bytes a context needs and the largest context the GPUs can hold."""
    per_token = shape.layers * shape.kv_heads * shape.head_dim * 2 * KV_DTYPE_BYTES[kv_dtype]
    total = context * per_token
    free_per_gpu = budget.memory_gib * budget.utilization - budget.weights_gib_per_gpu
    max_tokens = max(0, math.floor(free_per_gpu * GIB * budget.gpus / per_token))
    return KvPlan(
        context=context,
        kv_dtype=kv_dtype,
        bytes_per_token=per_token,
        total_gib=total / GIB,
        per_gpu_gib=total / GIB / budget.gpus,
        free_per_gpu_gib=free_per_gpu,
        max_tokens=max_tokens,
    )


def yarn_factor(context: int, native_context: int = QWEN3_CODER_480B.native_context) -> float | None:
    """The YaRN scaling factor a context needs (None when it fits the native window)."""
    if context <= native_context:
        return None
    return float(math.ceil(context / native_context))
