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
