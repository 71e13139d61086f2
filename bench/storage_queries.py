"""Benchmark: the sidebar, message listing and search on a big database, indexed vs not.

Builds (cached under data/bench/, rebuilt with --rebuild) a workbench database of 10,000
conversations and 1,000,000 messages through the real schema, then times in the same run,
side by side, each query as the app runs it and a baseline: the same SQL with the index
disabled (`NOT INDEXED`), and for search the naive `LIKE '%word%'` scan instead of FTS5.
Times are medians of warm runs, in milliseconds.

    .venv/app/bin/python bench/storage_queries.py [--conversations N] [--messages N] [--rebuild]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from storage import Store  # noqa: E402
from storage.conversations import list_conversations  # noqa: E402
from storage.messages import list_messages  # noqa: E402
from storage.search import SEARCH_SQL, TITLE_WEIGHT, fts_query, search_conversations  # noqa: E402  # noqa: E402
from storage.transactions import write  # noqa: E402

OWNERS = 10
BATCH = 20_000
SEED = 1234


def vocabulary(rng: random.Random, size: int = 20_000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = {"".join(rng.choices(letters, k=rng.randint(3, 10))) for _ in range(size)}
    return sorted(words)


def build(path: Path, conversations: int, messages: int) -> None:
    """Fill a fresh database: owners alice0.., conversations spread over a year, Zipf-ish words."""
    rng = random.Random(SEED)
    words = vocabulary(rng)
    rng.shuffle(words)  # so the common words do not all share a prefix
    # A Zipf-like word distribution, like real text: a few words common, most rare.
    weights = [1 / (rank + 1) for rank in range(len(words))]
    cumulative = []
    total = 0.0
    for w in weights:
        total += w
        cumulative.append(total)

    def text(n: int) -> str:
        return " ".join(rng.choices(words, cum_weights=cumulative, k=n))

    start = time.perf_counter()
    store = Store(path)
    db = store.db
    now = time.time()
    with write(db):
        db["conversations"].insert_all(
            (
                {
                    "id": cid,
                    "owner": f"alice{cid % OWNERS}",
                    "title": text(rng.randint(2, 6)),
                    "created_at": now - 365 * 86400 + cid * 3000,
                    "updated_at": now - 365 * 86400 + cid * 3000 + rng.random() * 86400 * 30,
                }
                for cid in range(1, conversations + 1)
            ),
            batch_size=BATCH,
        )
    per = messages // conversations
    done = 0
    while done < messages:
        chunk = min(BATCH * 5, messages - done)
        with write(db):
            db["messages"].insert_all(
                (
                    {
                        "conversation_id": (done + i) // per + 1,
                        "role": "user" if (done + i) % 2 == 0 else "assistant",
                        "content": text(rng.randint(10, 40)),
                        "created_at": now,
                        **(
                            {"prompt_tokens": 100, "completion_tokens": 50}
                            if (done + i) % 2
                            else {}
                        ),
                    }
                    for i in range(chunk)
                ),
                batch_size=BATCH,
            )
        done += chunk
        print(f"  {done:,} messages ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    db.execute("ANALYZE")
    store.close()
    print(
        f"built in {time.perf_counter() - start:.0f} s: {path.stat().st_size / 2**20:.0f} MiB",
        file=sys.stderr,
    )


def median_ms(fn, runs: int) -> float:
    fn()  # warm the page cache and the statement cache
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


SIDEBAR = (
    "SELECT id, owner, title, system_prompt, params, created_at, updated_at"
    " FROM conversations WHERE owner = ?"
    " ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?"
)
SIDEBAR_BASELINE = (
    "SELECT id, owner, title, system_prompt, params, created_at, updated_at"
    " FROM conversations NOT INDEXED WHERE owner = ?"
    " ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?"
)
MESSAGES = (
    "SELECT * FROM messages WHERE conversation_id = ?"
    " AND conversation_id IN (SELECT id FROM conversations WHERE id = ? AND owner = ?)"
    " ORDER BY id"
)
MESSAGES_BASELINE = (
    "SELECT * FROM messages NOT INDEXED WHERE conversation_id = ?"
    " AND conversation_id IN (SELECT id FROM conversations WHERE id = ? AND owner = ?)"
    " ORDER BY id"
)
SEARCH_BASELINE = """
SELECT conversations.id, conversations.title, max(conversations.updated_at) AS updated_at
FROM conversations LEFT JOIN messages ON messages.conversation_id = conversations.id
WHERE conversations.owner = :owner
  AND (conversations.title LIKE :pattern OR messages.content LIKE :pattern)
GROUP BY conversations.id ORDER BY updated_at DESC LIMIT 20
"""


def pick_words(db) -> tuple[str, str, str]:
    """A rare, a common and the most frequent word of the data whose index term is the word
    itself (not changed by stemming), so FTS and LIKE look for the same thing."""
    words = set(vocabulary(random.Random(SEED)))
    db.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.bench_vocab"
        " USING fts5vocab(main, messages_fts, row)"
    )
    rows = [
        (term, doc)
        for term, doc in db.execute("SELECT term, doc FROM temp.bench_vocab ORDER BY doc DESC")
        if term in words and len(term) >= 6
    ]
    return rows[-1][0], rows[len(rows) // 100][0], rows[0][0]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args(argv)

    path = REPO / "data" / "bench" / f"storage-{args.conversations}-{args.messages}.db"
    if args.rebuild or not path.exists():
        for leftover in path.parent.glob(path.name + "*"):
            leftover.unlink()
        build(path, args.conversations, args.messages)

    store = Store(path)
    db = store.db
    owner = "alice3"
    # One of the owner's conversations from the middle of the table.
    cid = db.execute(
        "SELECT id FROM conversations WHERE owner = ? ORDER BY id LIMIT 1"
        " OFFSET (SELECT count(*) / 2 FROM conversations WHERE owner = ?)",
        [owner, owner],
    ).fetchone()[0]
    rare, common, top = pick_words(db)
    counts = db.execute(
        "SELECT (SELECT count(*) FROM conversations), (SELECT count(*) FROM messages),"
        " (SELECT count(*) FROM conversations WHERE owner = ?)",
        [owner],
    ).fetchone()
    print(
        f"database: {counts[0]:,} conversations, {counts[1]:,} messages;"
        f" owner {owner} has {counts[2]:,} conversations"
    )
    hits = lambda word: db.execute(  # noqa: E731
        "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?", [fts_query(word)]
    ).fetchone()[0]
    print(
        f"search words: {rare!r} in {hits(rare):,} messages, {common!r} in {hits(common):,},"
        f" {top!r} in {hits(top):,}"
    )

    slow_runs = max(3, args.runs // 5)
    like = lambda word: {"owner": owner, "pattern": f"%{word}%"}  # noqa: E731
    search = lambda word: {  # noqa: E731
        "match": fts_query(word),
        "owner": owner,
        "limit": 20,
        "title_weight": TITLE_WEIGHT,
    }
    sql = lambda query, params: lambda: db.execute(query, params).fetchall()  # noqa: E731
    # (name, our SQL, baseline SQL, the API call as the app makes it, runs)
    cases = [
        (
            "sidebar, first page (50)",
            sql(SIDEBAR, [owner, 50, 0]),
            sql(SIDEBAR_BASELINE, [owner, 50, 0]),
            lambda: list_conversations(db, owner, limit=50),
            args.runs,
        ),
        (
            "sidebar, page 10",
            sql(SIDEBAR, [owner, 50, 450]),
            sql(SIDEBAR_BASELINE, [owner, 50, 450]),
            lambda: list_conversations(db, owner, limit=50, offset=450),
            args.runs,
        ),
        (
            "messages of one conversation",
            sql(MESSAGES, [cid, cid, owner]),
            sql(MESSAGES_BASELINE, [cid, cid, owner]),
            lambda: list_messages(db, owner, cid),
            slow_runs,
        ),
        (
            "search rare word (FTS5 vs LIKE)",
            sql(SEARCH_SQL, search(rare)),
            sql(SEARCH_BASELINE, like(rare)),
            lambda: search_conversations(db, owner, rare),
            slow_runs,
        ),
        (
            "search common word (FTS5 vs LIKE)",
            sql(SEARCH_SQL, search(common)),
            sql(SEARCH_BASELINE, like(common)),
            lambda: search_conversations(db, owner, common),
            slow_runs,
        ),
        (
            "search most frequent word (worst case)",
            sql(SEARCH_SQL, search(top)),
            sql(SEARCH_BASELINE, like(top)),
            lambda: search_conversations(db, owner, top),
            3,
        ),
    ]
    print(f"\n{'query':40} {'ours ms':>9} {'baseline ms':>12} {'speed-up':>9} {'API call ms':>12}")
    for name, ours, baseline, api, runs in cases:
        ours_ms = median_ms(ours, runs)
        base_ms = median_ms(baseline, runs)
        api_ms = median_ms(api, runs)
        print(f"{name:40} {ours_ms:9.2f} {base_ms:12.2f} {base_ms / ours_ms:8.1f}× {api_ms:12.2f}")
    print(
        "\nours: the SQL the app runs; baseline: the same SQL with NOT INDEXED (sidebar, messages),"
        "\na LIKE '%word%' scan of the owner's messages (search); API call: the storage function,"
        "\nrow conversion and snippets included. Medians of warm runs."
    )
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
