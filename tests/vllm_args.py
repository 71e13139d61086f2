"""Read a `vllm serve` command line as vLLM's own start-up does (run by the engine venv).

Usage: `python tests/vllm_args.py CONFIG_DIR < argv.json`, the argv without `vllm serve`.
Parses it with vLLM's argument parser (exits non-zero with argparse's message for a flag or
value vLLM does not take), then builds vLLM's model config with the model swapped for
CONFIG_DIR, a folder holding a stand-in `config.json` (the context and RoPE checks of the
engine's start-up; nothing is downloaded). Prints the settings as JSON, with the context the
model config allows or why it refuses.
"""

import json
import sys

from vllm.engine.arg_utils import EngineArgs
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.tool_parsers import ToolParserManager
from vllm.utils.argparse_utils import FlexibleArgumentParser

args = make_arg_parser(FlexibleArgumentParser()).parse_args(json.load(sys.stdin))
served_model = args.model_tag
# The stand-in replaces the hub id before EngineArgs sees it (offline, vLLM would look the id
# up in the local hub cache).
args.model = args.model_tag = args.tokenizer = sys.argv[1]
engine = EngineArgs.from_cli_args(args)
checked = {}
try:
    checked["model_config_max_model_len"] = engine.create_model_config().max_model_len
except Exception as exc:  # the refusal is the result
    checked["model_config_refused"] = str(exc)
json.dump(
    {
        **checked,
        "model": served_model,
        "served_model_name": engine.served_model_name,
        "tensor_parallel_size": engine.tensor_parallel_size,
        "enable_expert_parallel": engine.enable_expert_parallel,
        "kv_cache_dtype": engine.kv_cache_dtype,
        "max_model_len": engine.max_model_len,
        "gpu_memory_utilization": engine.gpu_memory_utilization,
        "max_num_batched_tokens": engine.max_num_batched_tokens,
        "max_num_seqs": engine.max_num_seqs,
        "cudagraph_capture_sizes": engine.compilation_config.cudagraph_capture_sizes,
        "enable_prefix_caching": engine.enable_prefix_caching,
        "hf_overrides": engine.hf_overrides,
        "tool_call_parser": args.tool_call_parser,
        "tool_call_parser_known": args.tool_call_parser in ToolParserManager.list_registered(),
        "enable_auto_tool_choice": args.enable_auto_tool_choice,
        "enable_prompt_tokens_details": args.enable_prompt_tokens_details,
    },
    sys.stdout,
)
