"""Full-text search: ranked, owner-scoped, snippets, and no user input can break it."""

import pytest

from storage.conversations import (
    add_message, create_conversation, rename_conversation, search_conversations,
)
from storage.search import fts_query


def ids(hits: list[dict]) -> list[int]:
    return [hit["conversation_id"] for hit in hits]


def test_hits_are_ranked_best_first(db):
    once = create_conversation(db, "alice", title="misc")
    add_message(db, "alice", once, "user", "a long message about many things: gardens, kites, "
                "rivers, trains, and once, briefly, a tokenizer, then more about boats and tea")
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
        "conversation_id": cid, "title": "Gardening",
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
    '"', '""', '"unbalanced', 'he said "hi', "*", "foo*", "-bar", "--", "AND", "OR", "NOT",
    "a AND", "NOT a", "(", ")", "((a)", "a OR (b", "NEAR(a b, 2)", "title:x", "content:x",
    "^start", "a + b", "{a b}", ":", "'", "\\", "%", "_", "\x00", "😀", "", "   ", "\n\t",
    "SELECT * FROM messages; --", "x" * 5000,
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
