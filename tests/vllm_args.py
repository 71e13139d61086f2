"""Parse a `vllm serve` command line with vLLM's own argument parser (run by the engine venv).

Reads the argv as JSON on stdin (without `vllm serve`), prints the engine settings it gives
as JSON. Exits non-zero, with argparse's message, for a flag or value vLLM does not take.
With a folder holding a stand-in `config.json` as argument, also builds vLLM's model config
from it (the model's context and RoPE checks of the engine's start-up) and reports the
context it allows, or why it refuses.
"""

import json
import sys

from vllm.engine.arg_utils import EngineArgs
from vllm.tool_parsers import ToolParserManager
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser

args = make_arg_parser(FlexibleArgumentParser()).parse_args(json.load(sys.stdin))
engine = EngineArgs.from_cli_args(args)
checked = {}
if len(sys.argv) > 1:
    engine_for_config = EngineArgs.from_cli_args(args)
    engine_for_config.model = engine_for_config.tokenizer = sys.argv[1]
    try:
        checked["model_config_max_model_len"] = engine_for_config.create_model_config().max_model_len
    except Exception as exc:  # the refusal is the result
        checked["model_config_refused"] = str(exc)
json.dump({
    **checked,
    "model": args.model_tag,
    "served_model_name": engine.served_model_name,
    "tensor_parallel_size": engine.tensor_parallel_size,
    "enable_expert_parallel": engine.enable_expert_parallel,
    "kv_cache_dtype": engine.kv_cache_dtype,
    "max_model_len": engine.max_model_len,
    "gpu_memory_utilization": engine.gpu_memory_utilization,
    "enable_prefix_caching": engine.enable_prefix_caching,
    "hf_overrides": engine.hf_overrides,
    "tool_call_parser": args.tool_call_parser,
    "tool_call_parser_known": args.tool_call_parser in ToolParserManager.list_registered(),
    "enable_auto_tool_choice": args.enable_auto_tool_choice,
    "enable_prompt_tokens_details": args.enable_prompt_tokens_details,
}, sys.stdout)
