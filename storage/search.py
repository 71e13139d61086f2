"""Full-text search over a key owner's conversation titles and messages (FTS5)."""

import re

import sqlite_utils

# Matched terms in snippets are wrapped in these (Markdown bold: the UI renders Markdown).
MARK_START, MARK_END = "**", "**"
SNIPPET_TOKENS = 16
# A title hit says more about a conversation than one word deep inside a message.
TITLE_WEIGHT = 2.0
# Prefix-match the last word only from this length: "a*" expands to most of the index and
# takes seconds on a million messages, "abc*" stays cheap.
MIN_PREFIX_CHARS = 3

_TERM = re.compile(r"\w+")


def fts_query(text: str) -> str:
    """A safe FTS5 query for free text typed by a user: every word AND-ed, quoted.

    Quoting each word makes FTS syntax inert (quotes, `*`, `-`, `AND`/`OR`/`NOT`, parens,
    `col:`), so no input can raise. The last word is a prefix, for search-as-you-type,
    once it has MIN_PREFIX_CHARS characters. Empty when the text has no words.
    """
    terms = _TERM.findall(text)
    if not terms:
        return ""
    quoted = [f'"{term}"' for term in terms]
    if len(terms[-1]) >= MIN_PREFIX_CHARS:
        quoted[-1] += "*"
    return " ".join(quoted)


SEARCH_SQL = """
WITH hits AS (
    SELECT conversations_fts.rowid AS conversation_id,
           conversations_fts.rank * :title_weight AS score,
           NULL AS message_id
    FROM conversations_fts
    JOIN conversations ON conversations.id = conversations_fts.rowid
    WHERE conversations_fts MATCH :match AND conversations.owner = :owner
    UNION ALL
    SELECT messages.conversation_id, messages_fts.rank, messages.id
    FROM messages_fts
    JOIN messages ON messages.id = messages_fts.rowid
    JOIN conversations ON conversations.id = messages.conversation_id
    WHERE messages_fts MATCH :match AND conversations.owner = :owner
),
best AS (
    -- SQLite takes bare columns (message_id) from the row that holds the min().
    SELECT conversation_id, min(score) AS score, message_id FROM hits GROUP BY conversation_id
)
SELECT best.conversation_id, best.message_id, conversations.title, conversations.updated_at
FROM best JOIN conversations ON conversations.id = best.conversation_id
ORDER BY best.score, conversations.updated_at DESC
LIMIT :limit
"""


def search_conversations(
    db: sqlite_utils.Database, owner: str, query: str, *, limit: int = 20
) -> list[dict]:
    """The owner's conversations matching `query`, best first.

    Each hit: {conversation_id, title, snippet, updated_at}; the snippet comes from the
    best-matching message, or from the title when that matched best.
    """
    match = fts_query(query)
    if not match:
        return []
    rows = db.query(
        SEARCH_SQL,
        {"match": match, "owner": owner, "limit": limit, "title_weight": TITLE_WEIGHT},
    )
    return [
        {
            "conversation_id": row["conversation_id"],
            "title": row["title"],
            "snippet": _snippet(db, match, row),
            "updated_at": row["updated_at"],
        }
        for row in list(rows)
    ]


def _snippet(db: sqlite_utils.Database, match: str, hit: dict) -> str:
    # Snippets only for the hits returned: computing one per match would cost the most.
    if hit["message_id"] is None:
        sql = (
            "SELECT highlight(conversations_fts, 0, :start, :end) FROM conversations_fts"
            " WHERE conversations_fts MATCH :match AND rowid = :id"
        )
        rowid = hit["conversation_id"]
    else:
        sql = (
            "SELECT snippet(messages_fts, 0, :start, :end, '…', :tokens) FROM messages_fts"
            " WHERE messages_fts MATCH :match AND rowid = :id"
        )
        rowid = hit["message_id"]
    params = {
        "start": MARK_START, "end": MARK_END, "match": match, "id": rowid,
        "tokens": SNIPPET_TOKENS,
    }
    row = db.execute(sql, params).fetchone()
    return row[0] if row else ""
