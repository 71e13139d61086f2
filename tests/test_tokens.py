"""Token counting: identical ids to Hugging Face `tokenizers`, exact chat-template prompt sizes."""

import json
import shutil
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from server.remote_tokens import RemoteTokenCounter
from server.settings import SERVED_MODEL_NAME
from server.tokens import (
    CHATML_TEMPLATE,
    SEGMENT_CACHE_ENTRIES,
    SEGMENT_CACHE_MIN_CHARS,
    TokenCounter,
    TokenizerFormatError,
    encoding_from_tokenizer_json,
    qwen3_counter,
    qwen3_tokenizer_dir,
)

PDFS = Path(__file__).parent / "pdfs"
SAMPLES = {
    "english": "It's 2024: we're testing   tokenizers, aren't we? Yes -- 3.14159 and 1,234,567.\n",
    "code": (
        "def handle(payload, retries=3):\n"
        "    for attempt in range(retries):\n"
        "\tif payload.get('key') is None:  # tab-indented\n"
        "            value = compute(attempt, 0x1F)\n"
        "\n\n"
        "    return {'status': 'done'}  \r\n"
    ),
    "chinese": "长文档分析需要保留每一页的页码，以便回答时引用原文。日本語のテキスト、"
    "한국어 문장도.",
    "mixed": "café (NFC: café) émoji 👍🏽 ① ½ ﬁ  <|im_start|>user\nhi<|im_end|>\n"
    "<think>\n\n</think>",
}


def hf_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False).ids


@pytest.fixture(scope="module")
def qwen3():
    return qwen3_counter()


@pytest.fixture(scope="module")
def qwen3_hf():
    return Tokenizer.from_file(str(qwen3_tokenizer_dir() / "tokenizer.json"))


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_qwen3_ids_identical_to_hf_tokenizers(qwen3, qwen3_hf, kind):
    assert qwen3.encode(SAMPLES[kind]) == hf_ids(qwen3_hf, SAMPLES[kind])


def test_qwen3_ids_identical_on_extracted_pdf_text(qwen3, qwen3_hf):
    from server.documents.extract import extract_pages

    pages = list(extract_pages((PDFS / "chromium-code-cjk.pdf").read_bytes(), workers=1))
    for page in pages[:6]:
        assert qwen3.encode(page.text) == hf_ids(qwen3_hf, page.text)


def test_smollm2_ids_identical_to_hf_tokenizers(model_dir):
    counter = TokenCounter.from_dir(model_dir)
    hf = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    assert counter.name == "SmolLM2-135M-Instruct"
    for text in SAMPLES.values():
        assert counter.encode(text) == hf_ids(hf, text)


def test_digits_then_byte_level_pre_tokenizer_matches_hf(model_dir, tmp_path):
    """The StarCoder/original-SmolLM2 form: every digit its own piece, then GPT-2's regex."""
    spec = json.loads((model_dir / "tokenizer.json").read_text())
    spec["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {
                "type": "ByteLevel",
                "add_prefix_space": False,
                "trim_offsets": True,
                "use_regex": True,
            },
        ],
    }
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec))
    hf = Tokenizer.from_file(str(path))
    encoding = encoding_from_tokenizer_json(spec, "digits")
    for text in [*SAMPLES.values(), "a  1 22  333\t 4", "x =   42  # 7 spaces\n  9"]:
        assert encoding.encode(text, allowed_special="all") == hf_ids(hf, text)


def test_counters_are_named_for_their_model(qwen3, model_dir):
    assert qwen3.name == TokenCounter.from_dir(qwen3_tokenizer_dir()).name == "Qwen3"
    assert TokenCounter.from_dir(model_dir).name == "SmolLM2-135M-Instruct"


def test_special_token_text_counts_as_one_token(qwen3):
    assert qwen3.encode("<|im_start|>") == [151644]
    assert qwen3.count_text("<|im_start|>user\nhi<|im_end|>") == 5


def test_text_is_nfc_normalised_like_the_tokenizer(qwen3):
    assert qwen3.encode("cafe\u0301") == qwen3.encode("café")


def test_count_messages_counts_exactly_what_the_template_renders(qwen3, qwen3_hf):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is on page 2?"},
    ]
    rendered = qwen3.render_messages(messages)
    assert rendered == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nWhat is on page 2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert qwen3.count_messages(messages) == len(hf_ids(qwen3_hf, rendered)) == 23


def test_content_parts_count_their_text_joined_by_newlines(qwen3):
    parts = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "first"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": "second"},
            ],
        }
    ]
    plain = [{"role": "user", "content": "first\nsecond"}]
    assert qwen3.render_messages(parts) == qwen3.render_messages(plain)
    assert qwen3.count_messages(parts) == qwen3.count_messages(plain)


def test_generation_prompt_can_be_left_out(qwen3):
    messages = [{"role": "user", "content": "hi"}]
    with_prompt = qwen3.count_messages(messages)
    without = qwen3.count_messages(messages, add_generation_prompt=False)
    assert with_prompt - without == len(qwen3.encode("<|im_start|>assistant\n")) == 3


def test_smollm2_template_adds_its_default_system_prompt(model_dir):
    counter = TokenCounter.from_dir(model_dir)
    assert counter.render_messages([{"role": "user", "content": "Hi"}]) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_chat_template_jinja_file_wins_over_tokenizer_config(tmp_path):
    shutil.copy(qwen3_tokenizer_dir() / "tokenizer.json", tmp_path / "tokenizer.json")
    shutil.copy(qwen3_tokenizer_dir() / "tokenizer_config.json", tmp_path / "tokenizer_config.json")
    (tmp_path / "chat_template.jinja").write_text("{{ messages[0]['content'] }}!")
    counter = TokenCounter.from_dir(tmp_path, name="custom")
    assert counter.render_messages([{"role": "user", "content": "hi"}]) == "hi!"


def test_folder_without_template_uses_chatml(tmp_path):
    shutil.copy(qwen3_tokenizer_dir() / "tokenizer.json", tmp_path / "tokenizer.json")
    counter = TokenCounter.from_dir(tmp_path)
    assert counter.chat_template == CHATML_TEMPLATE
    assert counter.render_messages([{"role": "user", "content": "hi"}]) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_non_byte_level_tokenizer_is_refused():
    spec = {"model": {"type": "Unigram", "vocab": []}, "pre_tokenizer": {"type": "Metaspace"}}
    with pytest.raises(TokenizerFormatError, match="byte-level BPE"):
        encoding_from_tokenizer_json(spec, "sentencepiece")


def test_count_texts_on_threads_equals_one_by_one(qwen3):
    texts = list(SAMPLES.values()) * 3
    assert qwen3.count_texts(texts, threads=2) == [qwen3.count_text(t) for t in texts]


async def test_async_wrappers_give_the_sync_counts(qwen3):
    messages = [{"role": "user", "content": SAMPLES["code"]}]
    assert await qwen3.acount_text(SAMPLES["code"]) == qwen3.count_text(SAMPLES["code"])
    assert await qwen3.acount_messages(messages) == qwen3.count_messages(messages)


async def test_remote_counter_matches_local_counts_of_the_served_model(engine_url, model_dir):
    local = TokenCounter.from_dir(model_dir)
    messages = [
        {"role": "user", "content": SAMPLES["code"]},
        {"role": "assistant", "content": SAMPLES["chinese"]},
        {"role": "user", "content": [{"type": "text", "text": SAMPLES["english"]}]},
    ]
    async with RemoteTokenCounter(engine_url, model=SERVED_MODEL_NAME) as remote:
        assert await remote.acount_text(SAMPLES["mixed"]) == local.count_text(SAMPLES["mixed"])
        assert await remote.acount_messages(messages) == local.count_messages(messages)
        assert await remote.amax_model_len() > 0
        # The blocking forms, for ingestion threads on the external profile.
        texts = [SAMPLES["chinese"], SAMPLES["code"]]
        assert remote.count_texts(texts) == local.count_texts(texts)
        assert remote.count_messages(messages) == local.count_messages(messages)


def long_text_with_special_tokens() -> str:
    body = "".join(SAMPLES[k] for k in sorted(SAMPLES)) * 200  # ≈100k chars, specials inside
    return "<|im_start|>" + body + "<|im_end|>" + body[:20_000] + "<|endoftext|>"


def test_long_texts_count_exactly_as_one_encode_also_when_remembered(qwen3, qwen3_hf):
    text = long_text_with_special_tokens()
    assert len(text) > 4 * SEGMENT_CACHE_MIN_CHARS
    expected = len(hf_ids(qwen3_hf, text))
    assert qwen3.count_text(text) == expected
    assert qwen3.count_text(text) == expected  # the remembered segments give the same count
    # A different draft after the same long document: only the short tail is new.
    messages = [{"role": "system", "content": text}, {"role": "user", "content": "Why? 为什么"}]
    rendered = qwen3.render_messages(messages)
    assert qwen3.count_messages(messages) == len(hf_ids(qwen3_hf, rendered))


def test_remembered_counts_are_bounded(qwen3):
    counter = TokenCounter(qwen3.encoding, name="bounded")
    for n in range(SEGMENT_CACHE_ENTRIES + 5):
        counter.count_text(f"{n} " + "x y " * (SEGMENT_CACHE_MIN_CHARS // 4))
    assert len(counter._segments) == SEGMENT_CACHE_ENTRIES
