"""The memory planner against the published data points for Qwen3-Coder-480B-A35B-Instruct-FP8.

Each point gives what vLLM itself reported on real GPUs; the planner must land within 10 %.
Which point calibrates which constant, and which point is not independent, is said per test and
in docs/memory.md.
"""

import pytest

from server.engine.memory_plan import (
    GIB,
    QWEN3_CODER_480B,
    EngineSettings,
    Layout,
    default_capture_sizes,
    plan_memory,
    weights_bytes_per_gpu,
    yarn_factor,
)
from server.engine.profiles import H200X4_SETTINGS, h200x4_memory

TOLERANCE = 0.10


def close(modelled: float, published: float) -> bool:
    return abs(modelled - published) <= TOLERANCE * published


def test_the_checkpoint_shapes_add_up_to_its_449_gib():
    """All of the FP8 checkpoint on one GPU is its file size (482 GB, 449 GiB)."""
    whole = weights_bytes_per_gpu(QWEN3_CODER_480B, Layout(tp=1, expert_parallel=False))
    assert round(whole / GIB) == 449 and round(whole / 1e9) == 482
    per_gpu = weights_bytes_per_gpu(QWEN3_CODER_480B, Layout(tp=4)) / GIB
    assert 112.3 <= per_gpu <= 113.5  # the range for TP 4 with expert parallel


def test_kv_bytes_per_token():
    assert QWEN3_CODER_480B.kv_bytes_per_token("fp8") == 62 * 8 * 128 * 2 == 126_976
    assert QWEN3_CODER_480B.kv_bytes_per_token("bf16") == 2 * 126_976
    tp4 = plan_memory(700_000, Layout(tp=4), H200X4_SETTINGS)
    assert tp4.kv_per_token_per_gpu == 31_744 and round(tp4.kv_needed / GIB, 1) == 20.7
    # TP 2 × PP 2 splits the heads in two and the layers in two: the same bytes per GPU.
    assert plan_memory(1, Layout(tp=2, pp=2), H200X4_SETTINGS).kv_per_token_per_gpu == 31_744
    # DP 8: every rank holds all heads of all layers.
    assert (
        plan_memory(1, Layout(tp=1, dp=8), EngineSettings(0.9, "bf16")).kv_per_token_per_gpu
        == 253_952
    )


@pytest.mark.parametrize(
    "utilization, kv_gib, estimated", [(0.90, 48.66, 205_728), (0.95, 55.65, 235_296)]
)
def test_8xh20_dp8_ep_bf16_recipes_pr12(utilization, kv_gib, estimated):
    """vLLM recipes PR #12 (vLLM 0.10.1, before the CUDA-graph estimate existed): `-dp=8
    --enable-expert-parallel`, KV in bf16, other settings vLLM's defaults. The 0.90 run
    calibrates the data-parallel non-torch constant; the 0.95 run checks it."""
    plan = plan_memory(
        262_144, Layout(tp=1, dp=8), EngineSettings(utilization, "bf16", estimate_cudagraphs=False)
    )
    assert close(plan.kv_available / GIB, kv_gib), plan.lines()
    assert close(plan.max_tokens, estimated)
    assert round(plan.kv_needed / GIB, 2) == 62.00  # vLLM: "62.00 GiB KV cache is needed"
    assert not plan.fits


def test_4xh200_tp2_pp2_fp8_at_098():
    """The TP 2 × PP 2 report: utilization 0.98, fp8 KV: ≈707k tokens fit, 760k were "1.54 GiB
    short". It calibrates the tensor-parallel non-torch constant, so it checks the arithmetic
    (weights, KV per GPU, blocks), not the constant."""
    layout, settings = Layout(tp=2, pp=2), EngineSettings(0.98, "fp8")
    assert close(plan_memory(707_000, layout, settings).max_tokens, 707_000)
    short = -plan_memory(760_000, layout, settings).margin / GIB
    assert abs(short - 1.54) <= 0.1


def test_4xh200_tp4_fp8_guide_421k():
    """The public 4×H200 guide: ≈421k tokens at TP 4 with fp8 KV. Its utilization is not
    stated in the source this project has; at 0.92 (vLLM's other defaults) the planner lands
    within 10 %, and at that value its non-KV overhead equals the TP 2 × PP 2 report's, so the
    two reports agree. At vLLM's default 0.90 the planner gives ≈308k (−27 %): this point is
    not an independent check, and the guide is the source the plan distrusts."""
    plan = plan_memory(421_000, Layout(tp=4), EngineSettings(0.92, "fp8"))
    assert close(plan.max_tokens, 421_000), plan.lines()
    at_default = plan_memory(421_000, Layout(tp=4), EngineSettings(0.90, "fp8"))
    assert not close(at_default.max_tokens, 421_000)


def test_the_h200x4_profile_fits_700k_with_a_margin_of_more_than_a_gibibyte():
    plan = h200x4_memory(700_000)
    assert plan.fits and plan.margin > 1.5 * GIB
    # Every reserve is counted: nothing but the KV cache is left after them.
    terms = plan.weights + plan.non_torch + plan.activation + plan.cudagraphs + plan.kv_available
    assert terms == plan.budget
    assert plan.non_torch > 0 and plan.activation > 0 and plan.cudagraphs > 0
    # With vLLM's defaults (0.90, 8,192 batched tokens, 1,024 sequences, 51 capture sizes) the
    # same four GPUs hold less than half of it.
    assert plan_memory(700_000, Layout(tp=4), EngineSettings(0.90)).max_tokens < 350_000


def test_each_lever_moves_the_kv_cache_the_right_way():
    base = h200x4_memory(700_000).kv_available
    s = H200X4_SETTINGS
    more_tokens = plan_memory(
        700_000,
        Layout(tp=4),
        EngineSettings(
            s.utilization,
            max_num_batched_tokens=8192,
            max_num_seqs=s.max_num_seqs,
            capture_sizes=s.capture_sizes,
        ),
    ).kv_available
    default_graphs = plan_memory(
        700_000,
        Layout(tp=4),
        EngineSettings(
            s.utilization,
            max_num_batched_tokens=s.max_num_batched_tokens,
            max_num_seqs=s.max_num_seqs,
        ),
    ).kv_available
    lower = plan_memory(
        700_000,
        Layout(tp=4),
        EngineSettings(
            0.95,
            max_num_batched_tokens=s.max_num_batched_tokens,
            max_num_seqs=s.max_num_seqs,
            capture_sizes=s.capture_sizes,
        ),
    ).kv_available
    assert more_tokens < base and default_graphs < base and lower < base


def test_default_capture_sizes_follow_vllm():
    """vLLM 0.32 `config/vllm.py`: 1, 2, 4, then steps of 8 to 248, steps of 16 to the ceiling
    min(2 × max_num_seqs, 512, max_num_batched_tokens)."""
    sizes = default_capture_sizes(1024, 8192)
    assert len(sizes) == 51 and sizes[:5] == [1, 2, 4, 8, 16] and sizes[-2:] == [496, 512]
    assert default_capture_sizes(16, 4096) == [1, 2, 4, 8, 16, 24, 32]


def test_dry_run_lines_show_every_term():
    text = "\n".join(h200x4_memory(700_000).lines())
    for term in (
        "GPU memory",
        "utilization 0.98",
        "weights",
        "non-torch",
        "activation peak",
        "CUDA-graph estimate",
        "KV cache",
        "700,000-token request",
        "margin",
        "fits",
    ):
        assert term in text


def test_yarn_factor():
    assert yarn_factor(262_144) is None and yarn_factor(262_145) == 2.0
    assert yarn_factor(700_000) == 3.0
