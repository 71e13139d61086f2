"""Full-text search over a key owner's conversation titles and messages (FTS5).

Words go to the porter index (m002). A query with CJK text, written without spaces between
words, goes to the trigram indexes of the rows that have CJK (m005) and matches substrings.
"""

import re
from collections.abc import Callable

import sqlite_utils

from storage.migrations import CJK_CHARS

# Matched terms in snippets are wrapped in these (Markdown bold: the UI renders Markdown).
MARK_START, MARK_END = "**", "**"
SNIPPET_TOKENS = 16
# CJK snippets are cut by characters: about as much text as SNIPPET_TOKENS English words.
SNIPPET_CHARS = 40
# A title hit says more about a conversation than one word deep inside a message.
TITLE_WEIGHT = 2.0
# Prefix-match the last word only from this length: "a*" expands to most of the index and
# takes seconds on a million messages, "abc*" stays cheap.
MIN_PREFIX_CHARS = 3
# The trigram index finds substrings of 3 characters or more; shorter terms are LIKE filters,
# each a clause of the SQL (SQLite caps an expression's depth at 1000): only the first count.
MAX_SHORT_TERMS = 32

_TERM = re.compile(r"\w+")
_CJK = re.compile(f"[{CJK_CHARS}]")


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


# Hits from titles and messages (`hits`), the best per conversation, best first.
_RANKED_SQL = """
WITH hits AS ({hits}),
best AS (
    -- SQLite takes bare columns (message_id) from the row that holds the min().
    SELECT conversation_id, min(score) AS score, message_id FROM hits GROUP BY conversation_id
)
SELECT best.conversation_id, best.message_id, conversations.title, conversations.updated_at
FROM best JOIN conversations ON conversations.id = best.conversation_id
ORDER BY best.score, conversations.updated_at DESC
LIMIT :limit
"""

SEARCH_SQL = _RANKED_SQL.format(
    hits="""
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
"""
)


def search_conversations(
    db: sqlite_utils.Database, owner: str, query: str, *, limit: int = 20
) -> list[dict]:
    """The owner's conversations matching `query`, best first.

    Each hit: {conversation_id, title, snippet, updated_at}; the snippet comes from the
    best-matching message, or from the title when that matched best.
    """
    terms = _TERM.findall(query)
    if any(_CJK.search(term) for term in terms):
        sql, params, snippet = _cjk_search(terms)
    else:
        match = fts_query(query)
        if not match:
            return []
        sql, params = SEARCH_SQL, {"match": match}
        snippet = lambda db, hit: _snippet(db, match, hit)  # noqa: E731
    rows = db.query(sql, {**params, "owner": owner, "limit": limit, "title_weight": TITLE_WEIGHT})
    return [
        {
            "conversation_id": row["conversation_id"],
            "title": row["title"],
            "snippet": snippet(db, row),
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
        "start": MARK_START,
        "end": MARK_END,
        "match": match,
        "id": rowid,
        "tokens": SNIPPET_TOKENS,
    }
    row = db.execute(sql, params).fetchone()
    return row[0] if row else ""


# CJK: substrings --------------------------------------------------------------------------


def _cjk_search(terms: list[str]) -> tuple[str, dict, Callable[..., str]]:
    """SQL, parameters and snippet function for a query with CJK terms, every term AND-ed.

    Terms of 3 characters or more are a trigram MATCH, each quoted (FTS syntax stays inert);
    shorter ones, which the trigram index cannot look up, are LIKE filters on the text
    itself. Ranked by the trigram index's rank; without one, titles first, then recency.
    """
    unique = list({term.casefold(): term for term in terms}.values())
    long = [term for term in unique if len(term) >= 3]
    short = [term for term in unique if len(term) < 3][:MAX_SHORT_TERMS]
    params = {f"like{i}": f"%{_like_escape(term)}%" for i, term in enumerate(short)}
    if long:
        params["match"] = " ".join(f'"{term}"' for term in long)

    def branch(table: str, column: str) -> tuple[str, str, str]:
        # (FROM, conditions besides the owner, rank) for one of the searched tables.
        likes = "".join(
            f" AND {table}.{column} LIKE :like{i} ESCAPE '\\'" for i in range(len(short))
        )
        if not long:
            # LIKE alone: the owner's rows, found through the owner and conversation indexes.
            return table, likes, "-1.0"
        index = f"{table}_cjk"
        source = f"{index} JOIN {table} ON {table}.id = {index}.rowid"
        return source, f" AND {index} MATCH :match{likes}", f"{index}.rank"

    titles, title_where, title_rank = branch("conversations", "title")
    messages, message_where, message_rank = branch("messages", "content")
    hits = f"""
    SELECT conversations.id AS conversation_id, {title_rank} * :title_weight AS score,
           NULL AS message_id
    FROM {titles}
    WHERE conversations.owner = :owner{title_where}
    UNION ALL
    SELECT messages.conversation_id, {message_rank}, messages.id
    FROM {messages}
    JOIN conversations ON conversations.id = messages.conversation_id
    WHERE conversations.owner = :owner{message_where}
"""
    pattern = re.compile(
        "|".join(re.escape(term) for term in sorted(unique, key=len, reverse=True)),
        re.IGNORECASE,
    )

    def snippet(db: sqlite_utils.Database, hit: dict) -> str:
        # Like highlight() for a title, like snippet() for a message; returned hits only.
        if hit["message_id"] is None:
            return _cjk_snippet(hit["title"], pattern, len(hit["title"]))
        row = db.execute(
            "SELECT content FROM messages WHERE id = ?", [hit["message_id"]]
        ).fetchone()
        return _cjk_snippet(row[0], pattern, SNIPPET_CHARS) if row else ""

    return _RANKED_SQL.format(hits=hits), params, snippet


def _like_escape(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _cjk_snippet(text: str, pattern: re.Pattern, chars: int) -> str:
    """About `chars` characters of `text` from just before the first match, every match
    marked; "…" where the text was cut."""
    first = pattern.search(text)
    at, end_of_first = (first.start(), first.end()) if first else (0, 0)
    start = max(0, min(at - chars // 4, len(text) - chars))
    end = max(start + chars, end_of_first)
    marked = pattern.sub(lambda m: f"{MARK_START}{m[0]}{MARK_END}", text[start:end])
    return ("…" if start else "") + marked + ("…" if end < len(text) else "")
