"""Raw payloads stored once, read back whole.

A chat sends its whole history with every turn, and a streamed reply is both a NetworkCall's
response and its ResponseStream's rawOutput. Stored as such, a chat's database grows with the
square of its length. So the store keeps them this way, and puts them back together on read:

* A NetworkCall body that repeats an earlier call's body keeps only what is new: the earlier
  call's id and how many characters it shares at the start and at the end (`bodyBase`), and the
  characters in between (`body`). A chat's next request repeats the previous one but for the
  new messages, so each turn stores its new messages and little else.
* A response arrives in pieces: each flush appends a ResponseChunk row (cost independent of how
  much arrived before); the call's own `response` column holds the last piece.
* A ResponseStream's rawOutput is read from the responses of the calls whose `streamId` is the
  stream, so the bytes are stored once.

* An embedding response's base64 vectors are already in the EmbeddingCache, as float32 bytes:
  the response keeps, for each `"embedding"`, the reference `"EmbeddingCache:<key>"` to its row
  (found by the key's `slot`, `vector_slot(key)`, the column the cache is indexed on)
  (`store_vectors`, when the recording knows each input's cache key), and the call's references
  say so (`"vectors": "EmbeddingCache"`), so only such calls are expanded. A vector is stored by
  reference only when its base64 is exactly the encoding of those bytes; any other is kept as is.

Every read through the store (`find`, `get`, `first`, `referencing`) and `network_calls()` gives
the exact text that went over the wire. `prune(store, before)` drops the raw payloads of old calls
and streams (messages and metrics stay) and gives the space back to the file system.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .clock import uuid7_many


class Store(Protocol):
    """The store whose payloads these are, as this module sees it (aihub_nb.store calls it)."""

    conn: sqlite3.Connection
    _lock: Any

__all__ = [
    "EXPANDED", "VECTORS", "PruneReport", "cached_vectors", "common_ends", "expand", "expand_columns", "prune",
    "store_vectors", "vector_slot",
]

# The models whose rows are put back together on read.
EXPANDED = frozenset({"NetworkCall", "ResponseStream"})
_BATCH = 500  # ids per IN (...) list
# A NetworkCall whose references hold this (under "vectors") has its vectors in the EmbeddingCache.
VECTORS = "EmbeddingCache"
_VECTOR_REF = VECTORS + ":"
_EMBEDDING_RE = re.compile(r'"embedding"\s*:\s*"([A-Za-z0-9+/=]*)"')
_VECTOR_REF_RE = re.compile(r'"EmbeddingCache:([0-9a-f]{64})"')


def vector_slot(key: str) -> int:
    """The EmbeddingCache `slot` of `key` (a sha256 in hex): its first 60 bits as a number. The
    cache is indexed on it (unique): an integer index is a fraction of the size of one on the
    64-character key, so finding and adding vectors touch far fewer pages."""
    return int(key[:15], 16)


def cached_vectors(conn: sqlite3.Connection, keys: Iterable[str]) -> dict[str, bytes]:
    """The EmbeddingCache vectors of `keys` (sha256 hex), in one query by slot; a row whose slot
    matches but whose key does not (another text's) is not one of them."""
    slots = sorted({vector_slot(key) for key in keys})
    if not slots:
        return {}
    # The slots give row ids (from the index alone); the rows are then read in row id order, so
    # vectors cached together are read from neighbouring pages.
    return dict(conn.execute(
        'SELECT key, vector FROM "EmbeddingCache" WHERE rowid IN '
        '(SELECT rowid FROM "EmbeddingCache" WHERE slot IN (SELECT value FROM json_each(?)))',
        (json.dumps(slots),),
    ).fetchall())


def common_ends(base: str, text: str) -> tuple[int, int]:
    """How many characters `text` shares with `base` at its start, and then at its end (the two
    never overlap in either string). Compared by slices, so the work is done in C."""
    limit = min(len(base), len(text))
    lo, hi = 0, limit
    while lo < hi:  # the longest common prefix, by halving
        mid = (lo + hi + 1) // 2
        if base[lo:mid] == text[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    head = lo
    limit -= head
    lo, hi = 0, limit
    nb, nt = len(base), len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if base[nb - mid : nb - lo] == text[nt - mid : nt - lo]:
            lo = mid
        else:
            hi = mid - 1
    return head, lo


def _batches(ids: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(ids), _BATCH):
        yield ids[i : i + _BATCH]


def _marks(ids: list[str]) -> str:
    return ", ".join("?" for _ in ids)


def _bodies(store: Store, rows: dict[str, tuple[str, Any]]) -> dict[str, str]:
    """Whole bodies for calls given as {id: (stored body, bodyBase JSON text or dict or None)}."""
    known: dict[str, tuple[str, dict | None]] = {}
    for call_id, (body, base) in rows.items():
        known[call_id] = (body or "", _base(base))
    missing = {b["call"] for _, b in known.values() if b and b["call"] not in known}
    if missing:  # every call up the chains, in one recursive query per batch
        for batch in _batches(sorted(missing)):
            sql = (
                'WITH RECURSIVE chain(id) AS (SELECT value FROM json_each(?) UNION '
                'SELECT json_extract(n."bodyBase", \'$.call\') FROM "NetworkCall" n JOIN chain ON n.id = chain.id '
                'WHERE n."bodyBase" IS NOT NULL) '
                'SELECT n.id, n."body", n."bodyBase" FROM "NetworkCall" n WHERE n.id IN (SELECT id FROM chain)'
            )
            for call_id, body, base in store.conn.execute(sql, (json.dumps(batch),)).fetchall():
                known.setdefault(call_id, (body or "", _base(base)))
    whole: dict[str, str] = {}
    for call_id in rows:
        stack = []
        cur = call_id
        while cur not in whole:
            entry = known.get(cur)
            if entry is None:  # a base that is gone: what is left is the stored part
                whole[cur] = ""
                break
            stack.append(cur)
            base = entry[1]
            if base is None:
                break
            cur = base["call"]
        for cid in reversed(stack):
            body, base = known[cid]
            if base is None:
                whole[cid] = body
            else:
                parent = whole.get(base["call"], "")
                head, tail = int(base.get("head", 0)), int(base.get("tail", 0))
                whole[cid] = parent[:head] + body + (parent[len(parent) - tail :] if tail else "")
    return {cid: whole[cid] for cid in rows}


def _base(value: Any) -> dict | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) and value.get("call") else None


def _responses(store: Store, tails: dict[str, str]) -> dict[str, str]:
    """Whole responses for calls given as {id: their own `response` column}: chunks, then that."""
    pieces: dict[str, list[str]] = {}
    ids = list(tails)
    for batch in _batches(ids):
        rows = store.conn.execute(
            f'SELECT "callId", "text" FROM "ResponseChunk" WHERE "callId" IN ({_marks(batch)}) ORDER BY rowid', batch
        ).fetchall()
        for call_id, text in rows:
            pieces.setdefault(call_id, []).append(text or "")
    return {cid: "".join(pieces[cid]) + (tail or "") if cid in pieces else (tail or "") for cid, tail in tails.items()}


def _raw_outputs(store: Store, heads: dict[str, str]) -> dict[str, str]:
    """Whole raw outputs for streams given as {id: their own `rawOutput` column}."""
    calls: dict[str, list[str]] = {}
    tails: dict[str, str] = {}
    ids = list(heads)
    for batch in _batches(ids):
        rows = store.conn.execute(
            f'SELECT id, "streamId", "response" FROM "NetworkCall" WHERE "streamId" IN ({_marks(batch)}) ORDER BY rowid',
            batch,
        ).fetchall()
        for call_id, stream_id, response in rows:
            calls.setdefault(stream_id, []).append(call_id)
            tails[call_id] = response
    responses = _responses(store, tails) if tails else {}
    return {
        sid: (head or "") + "".join(responses[c] for c in calls.get(sid, ())) for sid, head in heads.items()
    }


def store_vectors(conn: sqlite3.Connection, text: str, model: str, keys: list[str], now: str) -> str | None:
    """`text`, an embedding response (OpenAI's, base64) to the inputs whose EmbeddingCache keys
    are `keys`, with each vector kept in the cache (as `model`'s; the caller holds a write
    transaction) and replaced by a reference to its row; None when the response is not one
    that can be stored so (it is then stored as it is)."""
    if _VECTOR_REF in text:
        return None
    try:
        data = json.loads(text)["data"]
    except (ValueError, TypeError, KeyError):
        return None
    matches = list(_EMBEDDING_RE.finditer(text))
    if not isinstance(data, list) or not data or len(matches) != len(data):
        return None
    chosen: list[tuple[re.Match, str, int, bytes]] = []
    for position, (match, item) in enumerate(zip(matches, data)):
        if not isinstance(item, dict):
            return None
        index, encoded = item.get("index", position), item.get("embedding")  # no index: input order
        if type(index) is not int or not 0 <= index < len(keys) or encoded != match.group(1):
            return None
        try:
            vector = binascii.a2b_base64(encoded, strict_mode=True)
        except (binascii.Error, ValueError):
            return None
        if not vector or len(vector) % 4 or binascii.b2a_base64(vector, newline=False).decode() != encoded:
            return None  # not the one encoding of float32 bytes: kept as it came
        chosen.append((match, keys[index], vector_slot(keys[index]), vector))
    slots = sorted({slot for _, _, slot, _ in chosen})
    found = conn.execute(
        'SELECT slot, key, vector FROM "EmbeddingCache" WHERE slot IN (SELECT value FROM json_each(?))', (json.dumps(slots),)
    ).fetchall()
    taken = {slot: key for slot, key, _ in found}
    existing = {key: vector for _, key, vector in found}
    rows, pieces, at = [], [], 0
    for match, key, slot, vector in chosen:
        have = existing.get(key)
        if have is None:
            if slot in taken:
                continue  # another text's key begins the same (a 1 in 2**60 chance): kept in the response
            taken[slot] = key
            existing[key] = vector
            rows.append((key, slot, model, len(vector) // 4, vector))
        elif have != vector:
            continue  # the cache holds another vector for this text: this one stays in the response
        pieces.append(text[at : match.start(1)])
        pieces.append(_VECTOR_REF + key)
        at = match.end(1)
    conn.executemany(
        'INSERT INTO "EmbeddingCache" (id, "references", createdAt, updatedAt, key, slot, model, dimensions, vector) '
        "VALUES (?, '{}', ?, ?, ?, ?, ?, ?, ?)",
        [(row_id, now, now, *row) for row_id, row in zip(uuid7_many(len(rows)), rows)],
    )
    pieces.append(text[at:])
    return "".join(pieces)


def _expand_vectors(store: Store, texts: dict[str, str]) -> dict[str, str]:
    """`texts` (responses stored by `store_vectors`) with each cache reference put back as the
    base64 of its vector, all read in one query; a reference whose row is gone stays."""
    keys = {k for text in texts.values() for k in _VECTOR_REF_RE.findall(text)}
    if not keys:
        return texts
    vectors = cached_vectors(store.conn, keys)

    def put_back(match: re.Match) -> str:
        vector = vectors.get(match.group(1))
        return match.group(0) if vector is None else f'"{base64.b64encode(vector).decode()}"'

    return {cid: _VECTOR_REF_RE.sub(put_back, text) for cid, text in texts.items()}


def _has_vectors(references: Any) -> bool:
    if isinstance(references, str):
        if VECTORS not in references:
            return False
        try:
            references = json.loads(references)
        except ValueError:
            return False
    return isinstance(references, dict) and references.get("vectors") == VECTORS


def expand(store: Store, model_name: str, rows: list[dict[str, Any]]) -> None:
    """Put NetworkCall / ResponseStream rows read from the table back together, in place."""
    if not rows:
        return
    with store._lock:
        if model_name == "NetworkCall":
            chained = {r["id"]: (r.get("body"), r.get("bodyBase")) for r in rows if r.get("bodyBase")}
            if chained:
                whole = _bodies(store, chained)
                for r in rows:
                    if r["id"] in whole:
                        r["body"] = whole[r["id"]]
            responses = _responses(store, {r["id"]: r.get("response") or "" for r in rows})
            flagged = {r["id"] for r in rows if _has_vectors(r.get("references"))}
            if flagged:
                responses.update(_expand_vectors(store, {cid: responses[cid] for cid in flagged}))
            for r in rows:
                r["response"] = responses[r["id"]]
        elif model_name == "ResponseStream":
            raw = _raw_outputs(store, {r["id"]: r.get("rawOutput") or "" for r in rows})
            for r in rows:
                r["rawOutput"] = raw[r["id"]]


def expand_columns(store: Store, model_name: str, names: list[str], rows: list[tuple]) -> list[tuple]:
    """`rows` of a NetworkCall or ResponseStream query with columns `names` (id among them), with
    `body`, `response` or `rawOutput` put back together (for frames built from one SQL query)."""
    if model_name == "ResponseStream":
        if not rows or "id" not in names or "rawOutput" not in names:
            return rows
        i_id, i_raw = names.index("id"), names.index("rawOutput")
        with store._lock:
            raw = _raw_outputs(store, {r[i_id]: r[i_raw] or "" for r in rows})
        return [tuple(raw[r[i_id]] if i == i_raw else v for i, v in enumerate(r)) for r in rows]
    if not rows or "id" not in names or not ({"body", "response"} & set(names)):
        return rows
    i_id = names.index("id")
    ids = [r[i_id] for r in rows]
    with store._lock:
        stored: dict[str, tuple] = {}
        for batch in _batches(ids):
            for row in store.conn.execute(
                f'SELECT id, "body", "bodyBase", "response", "references" FROM "NetworkCall" WHERE id IN ({_marks(batch)})',
                batch,
            ):
                stored[row[0]] = row
        bodies = _bodies(store, {cid: (s[1], s[2]) for cid, s in stored.items() if s[2]}) if "body" in names else {}
        responses = _responses(store, {cid: s[3] or "" for cid, s in stored.items()}) if "response" in names else {}
        flagged = {cid for cid, s in stored.items() if _has_vectors(s[4])} if responses else set()
        if flagged:
            responses.update(_expand_vectors(store, {cid: responses[cid] for cid in flagged}))
    out = []
    i_body = names.index("body") if "body" in names else None
    i_resp = names.index("response") if "response" in names else None
    for r in rows:
        r = list(r)
        cid = r[i_id]
        if i_body is not None and cid in bodies:
            r[i_body] = bodies[cid]
        if i_resp is not None and cid in responses:
            r[i_resp] = responses[cid]
        out.append(tuple(r))
    return out


def materialize(store: Store, call_ids: Iterable[str]) -> int:
    """Store the whole body of each of these calls in its own row (no base); return how many
    changed. The caller holds a write transaction."""
    ids = list(call_ids)
    rows = {}
    for batch in _batches(ids):
        for cid, body, base in store.conn.execute(
            f'SELECT id, "body", "bodyBase" FROM "NetworkCall" WHERE id IN ({_marks(batch)}) AND "bodyBase" IS NOT NULL',
            batch,
        ):
            rows[cid] = (body, base)
    whole = _bodies(store, rows) if rows else {}
    for cid, body in whole.items():
        store.conn.execute('UPDATE "NetworkCall" SET "body" = ?, "bodyBase" = NULL WHERE id = ?', (body, cid))
    return len(whole)


def before_set(store: Store, model_name: str, id: str, fields: dict[str, Any]) -> None:
    """Setting a payload field replaces it whole: drop what the row's stored form kept elsewhere."""
    if model_name == "NetworkCall":
        if "body" in fields and "bodyBase" not in fields:
            fields["bodyBase"] = None
        if "response" in fields:
            store.conn.execute('DELETE FROM "ResponseChunk" WHERE "callId" = ?', (id,))
    elif model_name == "ResponseStream" and "rawOutput" in fields:
        store.conn.execute('UPDATE "NetworkCall" SET "streamId" = NULL WHERE "streamId" = ?', (id,))


def before_delete(store: Store, model_name: str, id: str) -> None:
    """A call about to go: calls whose body builds on it keep theirs whole; its pieces go with it;
    a stream about to go takes its raw output with it."""
    if model_name == "NetworkCall":
        children = [
            r[0]
            for r in store.conn.execute(
                'SELECT id FROM "NetworkCall" WHERE json_extract("bodyBase", \'$.call\') = ?', (id,)
            )
        ]
        if children:
            materialize(store, children)
        store.conn.execute('DELETE FROM "ResponseChunk" WHERE "callId" = ?', (id,))


@dataclass
class PruneReport:
    """What `prune` dropped and freed; shows as one line."""

    calls: int
    streams: int
    before_bytes: int
    after_bytes: int
    cutoff: str

    @property
    def freed_bytes(self) -> int:
        return max(0, self.before_bytes - self.after_bytes)

    def __str__(self) -> str:
        return (
            f"Pruned the raw payloads of {self.calls:,} network call{'s' if self.calls != 1 else ''} and "
            f"{self.streams:,} response stream{'s' if self.streams != 1 else ''} from before {self.cutoff}; "
            f"freed {_size(self.freed_bytes)} ({_size(self.before_bytes)} -> {_size(self.after_bytes)})."
        )

    def __repr__(self) -> str:
        return f"<PruneReport {self}>"

    def _repr_markdown_(self) -> str:
        return str(self)


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def file_bytes(store: Store) -> int:
    """The database's size on disk, its write-ahead log included."""
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.path.getsize(f"{store.path}{suffix}")
        except OSError:
            pass
    return total


def prune(store: Store, before: str) -> PruneReport:
    """Drop the raw payloads (request bodies, responses and their pieces, streams' raw output)
    of calls and streams created before `before` (an ISO time as the store writes it); keep
    every other field, the messages and the metrics. Then give the space back (VACUUM)."""
    with store._lock:
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size_before = file_bytes(store)
        with store.transaction() as conn:
            old = [
                r[0]
                for r in conn.execute(
                    'SELECT id FROM "NetworkCall" n WHERE "createdAt" < ? AND ("body" != \'\' OR "response" != \'\' '
                    'OR "bodyBase" IS NOT NULL OR EXISTS (SELECT 1 FROM "ResponseChunk" c WHERE c."callId" = n.id))',
                    (before,),
                )
            ]
            old_set = set(old)
            kept_children = [
                r[0]
                for r in conn.execute(
                    'SELECT id, json_extract("bodyBase", \'$.call\') FROM "NetworkCall" '
                    'WHERE "createdAt" >= ? AND "bodyBase" IS NOT NULL',
                    (before,),
                )
                if r[1] in old_set
            ]
            materialize(store, kept_children)  # newer calls that build on an old one keep their body
            for batch in _batches(old):
                conn.execute(f'DELETE FROM "ResponseChunk" WHERE "callId" IN ({_marks(batch)})', batch)
            for batch in _batches(old):
                conn.execute(
                    f'UPDATE "NetworkCall" SET "body" = \'\', "response" = \'\', "bodyBase" = NULL WHERE id IN ({_marks(batch)})',
                    batch,
                )
            # Streams: what they held themselves, and what their calls held for them.
            stream_ids: set[str] = set()
            for batch in _batches(old):
                stream_ids.update(
                    r[0]
                    for r in conn.execute(
                        f'SELECT "streamId" FROM "NetworkCall" WHERE id IN ({_marks(batch)}) AND "streamId" IS NOT NULL',
                        batch,
                    )
                )
            own = [r[0] for r in conn.execute(
                'SELECT id FROM "ResponseStream" WHERE "createdAt" < ? AND "rawOutput" != \'\'', (before,)
            )]
            conn.execute('UPDATE "ResponseStream" SET "rawOutput" = \'\' WHERE "createdAt" < ?', (before,))
            streams = len(stream_ids | set(own))
        store.conn.execute("VACUUM")
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size_after = file_bytes(store)
    return PruneReport(calls=len(old), streams=streams, before_bytes=size_before, after_bytes=size_after, cutoff=before)
