"""Full-text search: ranked, owner-scoped, snippets, CJK too, and no user input can break it."""

import pytest

from storage.conversations import create_conversation, delete_conversation, rename_conversation
from storage.messages import add_message, delete_message, update_message
from storage.search import SNIPPET_CHARS, fts_query, search_conversations


def ids(hits: list[dict]) -> list[int]:
    return [hit["conversation_id"] for hit in hits]


def test_hits_are_ranked_best_first(db):
    once = create_conversation(db, "alice", title="misc")
    add_message(
        db,
        "alice",
        once,
        "user",
        "a long message about many things: gardens, kites, "
        "rivers, trains, and once, briefly, a tokenizer, then more about boats and tea",
    )
    often = create_conversation(db, "alice", title="notes")
    add_message(db, "alice", often, "user", "tokenizer tokenizer tokenizer speed")
    titled = create_conversation(db, "alice", title="Tokenizer benchmarks")
    add_message(db, "alice", titled, "user", "numbers below")
    create_conversation(db, "alice", title="unrelated")
    assert ids(search_conversations(db, "alice", "tokenizer")) == [titled, often, once]


def test_each_conversation_appears_once_with_its_best_snippet(db):
    cid = create_conversation(db, "alice", title="Gardening")
    add_message(db, "alice", cid, "user", "When should I plant tomatoes?")
    add_message(db, "alice", cid, "assistant", "Plant tomatoes after the last frost.")
    [hit] = search_conversations(db, "alice", "frost")
    assert hit == {
        "conversation_id": cid,
        "title": "Gardening",
        "snippet": "Plant tomatoes after the last **frost**.",
        "updated_at": hit["updated_at"],
    }
    assert len(search_conversations(db, "alice", "tomatoes")) == 1


def test_search_is_scoped_to_the_owner(db):
    mine = create_conversation(db, "alice", title="kafka notes")
    add_message(db, "alice", mine, "user", "kafka partitions")
    theirs = create_conversation(db, "bob", title="kafka too")
    add_message(db, "bob", theirs, "user", "kafka consumers")
    assert ids(search_conversations(db, "alice", "kafka")) == [mine]
    assert ids(search_conversations(db, "bob", "kafka")) == [theirs]
    assert search_conversations(db, "carol", "kafka") == []


def test_words_are_anded_stemmed_and_the_last_is_a_prefix(db):
    cid = create_conversation(db, "alice", title="t")
    add_message(db, "alice", cid, "user", "running the migrations quickly")
    assert ids(search_conversations(db, "alice", "runs migration")) == [cid]
    assert ids(search_conversations(db, "alice", "migrations qui")) == [cid]
    assert search_conversations(db, "alice", "migrations slowly") == []


def test_renamed_title_is_searchable_under_the_new_name_only(db):
    cid = create_conversation(db, "alice", title="draft")
    rename_conversation(db, "alice", cid, "Quarterly report")
    assert ids(search_conversations(db, "alice", "quarterly")) == [cid]
    assert search_conversations(db, "alice", "draft") == []


HOSTILE = [
    '"',
    '""',
    '"unbalanced',
    'he said "hi',
    "*",
    "foo*",
    "-bar",
    "--",
    "AND",
    "OR",
    "NOT",
    "a AND",
    "NOT a",
    "(",
    ")",
    "((a)",
    "a OR (b",
    "NEAR(a b, 2)",
    "title:x",
    "content:x",
    "^start",
    "a + b",
    "{a b}",
    ":",
    "'",
    "\\",
    "%",
    "_",
    "\x00",
    "😀",
    "",
    "   ",
    "\n\t",
    "SELECT * FROM messages; --",
    "x" * 5000,
]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_search_strings_never_raise(db, query):
    cid = create_conversation(db, "alice", title="AND OR NOT near title")
    add_message(db, "alice", cid, "user", "foo bar a b x start content")
    assert isinstance(search_conversations(db, "alice", query), list)


def test_fts_syntax_in_user_input_is_matched_as_plain_words(db):
    cid = create_conversation(db, "alice", title="t")
    add_message(db, "alice", cid, "user", "use AND and NOT in boolean logic")
    assert ids(search_conversations(db, "alice", "AND NOT")) == [cid]
    assert ids(search_conversations(db, "alice", '"boolean" -logic')) == [cid]


def test_fts_query_quotes_every_word():
    assert fts_query('he said "hi" AND (xyz*') == '"he" "said" "hi" "AND" "xyz"*'
    assert fts_query(" -- ") == ""
    assert fts_query("short ab") == '"short" "ab"'  # too short to expand as a prefix


# CJK: written without spaces, found as substrings (trigram index, LIKE under 3 characters).

LONG_DOC = "长文档分析需要保留每一页的页码"


def chat(db, text: str, *, owner: str = "alice", title: str = "t") -> int:
    """A conversation with one user message."""
    cid = create_conversation(db, owner, title=title)
    add_message(db, owner, cid, "user", text)
    return cid


def found(db, query: str, owner: str = "alice") -> list[int]:
    return ids(search_conversations(db, owner, query))


def test_chinese_words_are_found_inside_unspaced_text(db):
    cid = chat(db, LONG_DOC, title="notes")
    other = chat(db, "短消息没有那个词", title="other")
    assert found(db, "文档") == [cid]  # 2 characters: LIKE
    assert found(db, "文档分析") == [cid]  # 4: trigram MATCH
    assert found(db, "页") == [cid]  # 1 character is a word too
    assert found(db, "消息") == [other]
    assert found(db, "文件") == []


def test_japanese_and_korean_are_found_inside_unspaced_text(db):
    ja = chat(db, "日本語の文書を検索できますか", title="ja")
    ko = chat(db, "한국어문서검색이가능합니다", title="ko")
    assert found(db, "文書") == [ja]
    assert found(db, "検索できます") == [ja]
    assert found(db, "문서") == [ko]
    assert found(db, "검색이가능") == [ko]


def test_chinese_title_is_found_and_weighs_more_than_a_message(db):
    in_message = chat(db, LONG_DOC, title="notes")
    titled = create_conversation(db, "alice", title="文档分析的笔记")
    add_message(db, "alice", in_message, "user", "touch: the message one is the newest")
    for query in ("文档", "文档分析"):
        assert found(db, query) == [titled, in_message]
    [hit, _] = search_conversations(db, "alice", "文档分析")
    assert hit["snippet"] == "**文档分析**的笔记"


def test_mixed_query_needs_every_term(db):
    both = chat(db, "Rust 的文档写得很好")
    chat(db, "Python 的文档")
    chat(db, "Rust documentation")
    assert found(db, "Rust 文档") == [both]
    assert found(db, "rust 文档写得") == [both]


def test_cjk_search_is_scoped_to_the_owner(db):
    mine = chat(db, LONG_DOC, title="我的")
    theirs = chat(db, LONG_DOC, owner="bob", title="文档")
    for query in ("文档", "文档分析", "页"):
        assert found(db, query) == [mine]
        assert found(db, query, "bob") == [theirs]
        assert found(db, query, "carol") == []


def test_edited_and_deleted_cjk_text_leaves_the_results(db):
    cid = create_conversation(db, "alice", title="t")
    edited = add_message(db, "alice", cid, "user", LONG_DOC)
    update_message(db, "alice", edited, content="改成别的内容了")
    for query in ("文档", "文档分析"):
        assert found(db, query) == []
    assert found(db, "别的内容") == [cid]
    update_message(db, "alice", edited, content="no CJK any more")
    assert found(db, "别的内容") == []

    deleted = add_message(db, "alice", cid, "user", LONG_DOC)
    delete_message(db, "alice", deleted)
    assert found(db, "文档分析") == []

    gone = chat(db, LONG_DOC, title="要删除的对话")
    rename_conversation(db, "alice", gone, "新的标题")
    assert found(db, "删除") == []
    assert found(db, "标题") == [gone]
    delete_conversation(db, "alice", gone)
    assert found(db, "文档分析") == []
    assert found(db, "标题") == []
    # Nothing left behind in the trigram indexes.
    assert db.execute("SELECT count(*) FROM messages_cjk").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM conversations_cjk").fetchone()[0] == 0


HOSTILE_CJK = [
    '"文档',
    "文档*",
    "NEAR(文档",
    "content:文档",
    "title:文档",
    "文档 OR",
    "文档分析*",
    "-文档",
    "文档 AND NOT",
    '"文档分析"',
    "文档'",
    "%文",
    "文_",
    "文\\",
    "文" * 5000,
    "文 " * 2000,
    "文档 " + "abc " * 2000,
    "・",
    "ー",
]


@pytest.mark.parametrize("query", HOSTILE_CJK)
def test_hostile_cjk_search_strings_never_raise(db, query):
    chat(db, LONG_DOC + " OR AND NOT abc", title="文档 NEAR content title")
    assert isinstance(search_conversations(db, "alice", query), list)


def test_like_wildcards_in_a_cjk_query_match_themselves(db):
    cid = chat(db, "文x档")
    assert found(db, "文_") == []  # "_" is a word character
    assert found(db, "文") == [cid]


def test_cjk_snippets_mark_every_term_in_a_short_window(db):
    chat(db, "前言" * 30 + "长文档分析需要保留每一页的页码，文档越长越要注意" + "结尾" * 30)
    [hit] = search_conversations(db, "alice", "文档 页码")
    snippet = hit["snippet"]
    assert snippet.startswith("…") and snippet.endswith("…")
    assert "长**文档**分析需要保留每一页的**页码**，**文档**越长" in snippet
    assert len(snippet.replace("**", "")) <= SNIPPET_CHARS + 2
    [hit] = search_conversations(db, "alice", "前言")
    assert hit["snippet"].startswith("**前言****前言**")  # from the start: no "…" before
