"""Named data migrations: changes to the store that a schema diff cannot express.

Tables and columns follow schema.prisma automatically (aihub_nb.store). Anything else (moving
data between fields, filling a new field from old rows, splitting a value) is a function here,
registered with `@migration`, run once per database inside the store's upgrade transaction and
recorded in the `_aihub_migrations` table. A released migration is never edited: write a new one.

    @migration
    def m002_fill_theme(store):
        store.conn.execute('UPDATE "UserSettings" SET theme = \\'light\\' WHERE theme = \\'\\'')
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, Protocol

from .clock import now_iso


class Store(Protocol):
    """The store being opened, as a migration sees it (aihub_nb.store runs the migrations)."""

    conn: sqlite3.Connection
    models: dict[str, Any]

__all__ = ["MIGRATIONS", "apply_pending", "migration", "names"]

MIGRATIONS: dict[str, Callable[["Store"], None]] = {}


def migration(fn: Callable[["Store"], None]) -> Callable[["Store"], None]:
    """Register a migration under its function name; names sort in the order they run."""
    if fn.__name__ in MIGRATIONS:
        raise ValueError(f"Migration {fn.__name__!r} is registered twice; give the new one a new name.")
    MIGRATIONS[fn.__name__] = fn
    return fn


def names() -> list[str]:
    return sorted(MIGRATIONS)


def apply_pending(store: "Store") -> list[str]:
    """Run the migrations this database has not seen, in name order; the caller holds the write lock."""
    applied = {r[0] for r in store.conn.execute("SELECT name FROM _aihub_migrations")}
    done = []
    for name in names():
        if name in applied:
            continue
        MIGRATIONS[name](store)
        store.conn.execute("INSERT INTO _aihub_migrations (name, appliedAt) VALUES (?, ?)", (name, now_iso()))
        done.append(f"migration {name}")
    return done


@migration
def m001_json_defaults(store: "Store") -> None:
    """Rows written before a Json field existed hold NULL where the schema now promises JSON."""
    for model in store.models.values():
        for field in model.fields.values():
            if field.type == "Json" and not field.optional:
                empty = "[]" if field.default == "[]" else "{}"
                store.conn.execute(
                    f'UPDATE "{model.table}" SET "{field.column}" = ? WHERE "{field.column}" IS NULL OR "{field.column}" = \'\'',
                    (empty,),
                )


@migration
def m002_unique_names(store: "Store") -> None:
    """Chat, connection, tool and agent names became unique (schema.prisma @@unique([name])).
    Rows that share a name keep it on the oldest; the others are renamed NAME-2, NAME-3, ..."""
    for table in ("Chat", "ModelConnections", "Tool", "Agent"):
        if "name" not in getattr(store.models.get(table), "fields", {}):
            continue  # a store opened with another schema
        taken = {r[0] for r in store.conn.execute(f'SELECT DISTINCT name FROM "{table}"')}
        duplicates = store.conn.execute(
            f'SELECT id, name FROM "{table}" AS t '
            f'WHERE rowid > (SELECT min(rowid) FROM "{table}" AS u WHERE u.name = t.name) ORDER BY rowid'
        ).fetchall()
        for row_id, name in duplicates:
            n = 2
            while (new := f"{name[:120]}-{n}") in taken:
                n += 1
            taken.add(new)
            store.conn.execute(f'UPDATE "{table}" SET name = ?, updatedAt = ? WHERE id = ?', (new, now_iso(), row_id))


@migration
def m003_embedding_slots(store: "Store") -> None:
    """EmbeddingCache rows are found by `slot` (the key's first 60 bits, uniquely indexed) instead
    of by a unique index on the 64-character key: fill the slot of the rows cached before, and
    drop the old index. Two old keys sharing a slot (a 1 in 2**60 chance) leave the later row a
    negative slot no key has: kept (recorded calls may refer to it), just no longer found."""
    if "slot" not in getattr(store.models.get("EmbeddingCache"), "fields", {}):
        return  # a store opened with another schema
    from .payloads import vector_slot

    rows = store.conn.execute('SELECT rowid, key FROM "EmbeddingCache" ORDER BY rowid').fetchall()
    seen: set[int] = set()
    updates = []
    for rowid, key in rows:
        try:
            slot = vector_slot(key)
        except (TypeError, ValueError):
            slot = -rowid  # not a sha256: nothing will look it up
        if slot in seen:
            slot = -rowid
        seen.add(slot)
        updates.append((slot, rowid))
    store.conn.executemany('UPDATE "EmbeddingCache" SET slot = ? WHERE rowid = ?', updates)
    store.conn.execute('DROP INDEX IF EXISTS "uq_EmbeddingCache_key"')
