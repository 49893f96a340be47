"""The store: one SQLite file whose tables follow schema.prisma.

    >>> store = Store("/tmp/aihub.db")
    >>> msg = store.create("Message", threadId=thread["id"], type="user", content="hi")
    >>> store.update("Message", msg["id"], content="hello")["updatedAt"] >= msg["updatedAt"]
    True

Opening a store creates the file readable by its owner only, turns on WAL and a busy timeout,
and brings the tables up to schema.prisma: missing tables are created, missing fields become
columns, declared indexes are created, and named data migrations (aihub_nb.migrations) run once
each. Rows are never dropped. All of that happens under one write lock, so several processes
opening the same file at once agree.

Writes on the hot path (a message, a metric, a stream chunk) are prepared INSERT/UPDATE
statements cached per table and column set, with no schema look-up per call.

Raw payloads (NetworkCall bodies and responses, ResponseStream raw output) are stored once and
in pieces (aihub_nb.payloads); every read through the store gives them back whole.

The store owns every connection to its file: the write connection, and one read-only connection
per thread (`reader()`) for long reads such as monitoring's frames, so a read never holds the
write lock while a chat turn writes (WAL lets them run side by side). `close()` closes them all.
"""

from __future__ import annotations

import functools
import json
import numbers
import os
import sqlite3
import threading
import time
import warnings
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from . import payloads
from .clock import now_iso, uuid7, uuid7_many
from .errors import NotFoundError, RecordNotFoundError, StoreError, StoreWarning, UnknownFieldError, UnknownTableError
from .prisma import Field, Model, Schema, load_schema

__all__ = ["Store", "find_named", "now_iso", "uuid7"]

_SQL_TYPES = {
    "String": "TEXT",
    "Boolean": "INTEGER",
    "Int": "INTEGER",
    "BigInt": "INTEGER",
    "Float": "REAL",
    "Decimal": "REAL",
    "DateTime": "TEXT",
    "Json": "TEXT",
    "Bytes": "BLOB",
}
_EMPTY = {"String": "", "Boolean": False, "Int": 0, "BigInt": 0, "Float": 0.0, "Decimal": 0.0, "Json": {}, "Bytes": b""}
_MIGRATIONS_TABLE = "_aihub_migrations"
# How create() fills a field the caller did not give (see Store._insert_plan).
_NEW_ID, _NOW, _CONSTANT, _SKIP = "new id", "now", "constant", "skip"

# ---------------------------------------------------------------- ids and times

# ---------------------------------------------------------------- value conversion


# json.dumps, minus building an encoder per call. NaN and infinities are refused: SQLite's JSON
# functions reject the text they would make, and every filter on that column would fail.
_dump_json = json.JSONEncoder(ensure_ascii=False, default=str, allow_nan=False).encode


def _dump_bool(value: Any) -> int:
    return 1 if value else 0


def _dump_datetime(value: Any) -> Any:
    if isinstance(value, str):
        return value
    return now_iso(value.timestamp()) if hasattr(value, "timestamp") else str(value)


def _dump_float(value: Any) -> float:
    return value if type(value) is float else float(value)  # numpy's float32 would go in as bytes


def _dump_int(value: Any) -> int:
    return value if type(value) is int else int(value)


_WRITERS = {
    "Json": _dump_json, "Boolean": _dump_bool, "DateTime": _dump_datetime,
    "Float": _dump_float, "Decimal": _dump_float, "Int": _dump_int, "BigInt": _dump_int,
}
# What create() returns for a given value, from its SQL form, so it matches get(): True, not 1;
# an ISO string, not a datetime. (Json values come back as given.)
_READ_BACK = {"Boolean": bool, "DateTime": str}


def _is_float(value: Any) -> bool:
    kind = type(value)
    if kind is float:
        return value == value  # NaN != NaN
    if kind is int:
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value


def _is_int(value: Any) -> bool:
    if type(value) is not int and (not isinstance(value, numbers.Integral) or isinstance(value, bool)):
        return False
    return -(2**63) <= value < 2**63  # what SQLite's INTEGER holds


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, int)) or type(value).__name__ == "bool_"


def _is_datetime(value: Any) -> bool:
    if type(value) is str:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return False
        return True
    return hasattr(value, "timestamp")


# What a value given for a field of each type must be; a failing check is a one-line StoreError.
_CHECKS = {
    "Float": _is_float, "Decimal": _is_float, "Int": _is_int, "BigInt": _is_int, "Boolean": _is_bool,
    "DateTime": _is_datetime, "Bytes": lambda v: isinstance(v, (bytes, bytearray, memoryview)),
}
_EXPECTED = {
    "Float": "a number", "Decimal": "a number", "Int": "a whole number below 2**63", "BigInt": "a whole number below 2**63",
    "Boolean": "True or False", "DateTime": "a datetime or an ISO-8601 string", "Bytes": "bytes",
    "Json": "a JSON value (no NaN or infinity)",
}


def _type_error(model: str, field: Field, value: Any) -> StoreError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return StoreError(
        f"{model}.{field.name} is {'an' if field.type[0] in 'AEIOU' else 'a'} {field.type} field: give {_EXPECTED.get(field.type, field.type)}, not {shown} ({type(value).__name__})."
    )


def _checked_sql(model: str, field: Field, value: Any) -> Any:
    """The SQL form of a value, after checking it fits the field's type."""
    if value is None:
        return None
    check = _CHECKS.get(field.type)
    if check is not None and not check(value):
        raise _type_error(model, field, value)
    try:
        return _to_sql(field, value)
    except (ValueError, OverflowError):
        raise _type_error(model, field, value) from None


def _to_sql(field: Field, value: Any) -> Any:
    if value is None:
        return None
    write = _WRITERS.get(field.type)
    return value if write is None else write(value)


def _reader(field: Field | None):
    if field is None:
        return None
    if field.type == "Json":
        return _load_json
    if field.type == "Boolean":
        return _load_bool
    return None


def _load_json(value: Any) -> Any:
    if value is None or value == "":
        return None if value is None else {}
    return json.loads(value)


def _bad_json(model: Model, field: Field, record: dict[str, Any], value: Any, exc: ValueError) -> Any:
    """A Json field that holds malformed text (written outside aihub_nb): warn naming the table,
    row and field, and read it as the field's default, so one bad row does not break a listing."""
    warnings.warn(
        f"{model.table} row {record.get('id')!r}: field {field.name} holds malformed JSON ({exc}: {str(value)[:40]!r}); "
        f"read as its default. Fix it with store.update({model.name!r}, {record.get('id')!r}, {field.name}=...).",
        StoreWarning,
        stacklevel=4,
    )
    if field.optional:
        return None
    default = field.default if field.has_default else None
    return json.loads(default) if isinstance(default, str) else {}


def _load_bool(value: Any) -> Any:
    return None if value is None else bool(value)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------- the store


def _table_keyword(method):
    """Let a store method take its table as `model_name=` too (the older keyword)."""

    @functools.wraps(method)
    def call(self, *args: Any, **kwargs: Any) -> Any:
        if "model_name" in kwargs and not args:
            args = (kwargs.pop("model_name"),)
        return method(self, *args, **kwargs)

    return call


class _Reader:
    """One thread's read connection, closed when the thread ends and its locals are freed."""

    __slots__ = ("conn", "__weakref__")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __del__(self) -> None:
        try:
            self.conn.close()
        except Exception:  # at interpreter exit sqlite3 may be gone already
            pass


class _Readers(threading.local):
    reader: _Reader | None = None


class Store:
    """A SQLite file whose tables follow schema.prisma. Thread-safe; safe across processes."""

    def __init__(self, path: str | os.PathLike, *, schema: Schema | None = None, timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.schema = schema or load_schema()
        self.models: dict[str, Model] = self.schema.models
        self._lock = threading.RLock()
        self._insert_sql: dict[tuple[str, tuple[str, ...]], str] = {}
        self._insert_plans: dict[str, tuple[tuple, ...]] = {}
        self._readers = _Readers()
        self._open_readers: weakref.WeakSet[_Reader] = weakref.WeakSet()
        self._readers_lock = threading.Lock()
        self.conn = self._connect(timeout)
        self.upgrade()

    # -- opening

    def _connect(self, timeout: float) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
        conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        deadline = time.monotonic() + timeout
        while True:  # switching to WAL needs a moment of exclusive access
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def upgrade(self) -> list[str]:
        """Bring the file up to schema.prisma and run pending migrations; return what changed."""
        from . import migrations

        with self._lock:
            if not self._needs_upgrade(migrations.names()):
                return []
            import sqlite_utils  # noqa: F401  loads pandas (~0.3 s): before the write lock, not under it

            with self.transaction():
                changes = self._apply_schema()
                changes += migrations.apply_pending(self)
                changes += self._apply_unique_indexes()  # after the migrations that make them hold
            self._insert_sql.clear()
            self._insert_plans.clear()
            return changes

    def _needs_upgrade(self, migration_names: list[str]) -> bool:
        existing = self._columns()
        for model in self.models.values():
            columns = existing.get(model.table)
            if columns is None or any(f.column not in columns for f in model.fields.values()):
                return True
        indexes = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        if any(_index_name(m, ix) not in indexes for m in self.models.values() for ix in m.indexes):
            return True
        if _MIGRATIONS_TABLE not in existing:
            return True
        applied = {r[0] for r in self.conn.execute(f"SELECT name FROM {_MIGRATIONS_TABLE}")}
        return any(name not in applied for name in migration_names)

    def _columns(self) -> dict[str, set[str]]:
        tables = [r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: {r[1] for r in self.conn.execute(f"PRAGMA table_info({_quote(t)})")} for t in tables}

    def _apply_schema(self) -> list[str]:
        import sqlite_utils

        db = sqlite_utils.Database(self.conn)
        changes: list[str] = []
        existing = self._columns()
        for model in self.models.values():
            columns = existing.get(model.table)
            if columns is None:
                db.create_table(
                    model.table,
                    {f.column: _SQL_TYPES[f.type] for f in model.fields.values()},
                    pk=next(f.column for f in model.fields.values() if f.is_id),
                    not_null={f.column for f in model.fields.values() if not f.optional},
                    defaults={f.column: d for f in model.fields.values() if (d := _column_default(f)) is not None},
                )
                changes.append(f"created table {model.table}")
                continue
            for f in model.fields.values():
                if f.column in columns:
                    continue
                default = _column_default(f)
                if default is None and not f.optional:
                    default = now_iso() if f.type == "DateTime" else _to_sql(f, _EMPTY[f.type])
                db[model.table].add_column(f.column, _SQL_TYPES[f.type], not_null_default=None if f.optional else default)
                changes.append(f"added column {model.table}.{f.column}")
        for model in self.models.values():
            for index in model.indexes:
                if index.unique:
                    continue
                columns = [model.fields[c].column if c in model.fields else c for c in index.columns]
                name = _index_name(model, index)
                db[model.table].create_index(columns, index_name=name, unique=index.unique, if_not_exists=True)
        if _MIGRATIONS_TABLE not in existing:
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {_MIGRATIONS_TABLE} (name TEXT PRIMARY KEY, appliedAt TEXT NOT NULL)")
        return changes

    def _apply_unique_indexes(self) -> list[str]:
        existing = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        changes = []
        for model in self.models.values():
            for index in model.indexes:
                name = _index_name(model, index)
                if not index.unique or name in existing:
                    continue
                columns = ", ".join(_quote(model.fields[c].column if c in model.fields else c) for c in index.columns)
                self.conn.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {_quote(name)} ON {_quote(model.table)} ({columns})")
                changes.append(f"created unique index {name}")
        return changes

    # -- transactions

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE): other writers wait instead of failing."""
        with self._lock:
            if self.conn.in_transaction:
                yield self.conn
                return
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection to the file (WAL: readers never block the writer),
        opened on first use, freed when the thread ends, closed by `close_readers()` / `close()`."""
        local = self._readers
        reader = local.reader
        if reader is None:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 60000")
            reader = local.reader = _Reader(conn)
            with self._readers_lock:
                self._open_readers.add(reader)
        return reader.conn

    def close_readers(self) -> None:
        """Close every thread's read connection; a later `reader()` opens a new one."""
        with self._readers_lock:
            readers, self._open_readers = list(self._open_readers), weakref.WeakSet()
            self._readers = _Readers()
        for reader in readers:
            reader.conn.close()

    def close(self) -> None:
        self.close_readers()
        with self._lock:
            self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- table and field checks

    def table(self, name: str) -> Model:
        """The declared table (its fields, indexes and SQL name); UnknownTableError lists the valid ones."""
        try:
            return self.models[name]
        except KeyError:
            raise UnknownTableError(name, valid=list(self.models)) from None

    model = table  # the older name

    def _check_fields(self, model: Model, names: Iterable[str]) -> None:
        unknown = [n for n in names if n not in model.fields]
        if unknown:
            raise UnknownFieldError(model.name, unknown, valid=list(model.fields))

    # -- CRUD

    def _insert_plan(self, model: Model) -> tuple[tuple, ...]:
        """Per field, worked out once per model: (name, SQL writer, read-back, how to fill it when
        not given, its constant Python value, a factory for a fresh mutable one, its SQL form)."""
        plan = self._insert_plans.get(model.name)
        if plan is not None:
            return plan
        steps = []
        for f in model.fields.values():
            const = fresh = None
            if f.is_id:
                how = _NEW_ID
            elif f.updated_at or f.default == ("now",):
                how = _NOW
            elif f.has_default and not isinstance(f.default, tuple):
                how, const = _CONSTANT, f.default
                if f.type == "Json" and isinstance(const, str):
                    const = json.loads(const)
            elif f.optional:
                how = _SKIP
            else:
                how, const = _CONSTANT, _EMPTY.get(f.type, "")
            if isinstance(const, (dict, list)):  # each record gets its own copy
                text = _dump_json(const)
                fresh = dict if text == "{}" else list if text == "[]" else (lambda text=text: json.loads(text))
            sql_const = None if const is None else _to_sql(f, const)
            check = _CHECKS.get(f.type)
            steps.append((f.name, _WRITERS.get(f.type), _READ_BACK.get(f.type), how, const, fresh, sql_const, check, f))
        plan = self._insert_plans[model.name] = tuple(steps)
        return plan

    @staticmethod
    def _insert_values(model: str, plan: tuple[tuple, ...], fields: dict[str, Any], now: str) -> tuple[dict[str, Any], list[Any]]:
        """The record as create() returns it, and the SQL parameters for its INSERT."""
        row: dict[str, Any] = {}
        params: list[Any] = []
        for name, write, back, how, const, fresh, sql_const, check, f in plan:
            if name in fields:
                value = fields[name]
                if value is not None and check is not None and not check(value):
                    raise _type_error(model, f, value)
                if write is None or value is None:
                    row[name] = value
                    params.append(value)
                else:
                    try:
                        sql = write(value)
                    except (ValueError, OverflowError):
                        raise _type_error(model, f, value) from None
                    params.append(sql)
                    row[name] = value if back is None else back(sql)
            elif how is _NOW:
                row[name] = now
                params.append(now)
            elif how is _NEW_ID:
                row[name] = value = uuid7()
                params.append(value)
            elif how is _CONSTANT:
                row[name] = fresh() if fresh is not None else const
                params.append(sql_const)
        return row, params

    def _insert_statement(self, model: Model, names: tuple[str, ...]) -> str:
        key = (model.name, names)
        sql = self._insert_sql.get(key)
        if sql is None:
            cols = ", ".join(_quote(model.fields[n].column) for n in names)
            marks = ", ".join("?" for _ in names)
            sql = self._insert_sql[key] = f"INSERT INTO {_quote(model.table)} ({cols}) VALUES ({marks})"
        return sql

    @_table_keyword
    def create(self, table: str, **fields: Any) -> dict[str, Any]:
        """Insert one record and return it as a dict (id, createdAt, updatedAt filled in)."""
        model = self.table(table)
        fmap = model.fields
        if not fields.keys() <= fmap.keys():
            self._check_fields(model, fields)
        row, params = self._insert_values(model.name, self._insert_plan(model), fields, now_iso())
        sql = self._insert_statement(model, tuple(row))
        with self._lock:
            try:
                self.conn.execute(sql, params)
            except sqlite3.IntegrityError as exc:
                raise _integrity_error(model, exc, row) from None
        if len(row) == len(fmap):
            return row
        return {name: row.get(name) for name in fmap}

    @_table_keyword
    def create_many(self, table: str, rows: Iterable[dict[str, Any]]) -> int:
        """Insert many records in one transaction; return how many."""
        model = self.table(table)
        fmap = model.fields
        plan = self._insert_plan(model)
        values = self._insert_values
        now = now_iso()
        batches: dict[tuple[str, ...], list[list[Any]]] = {}
        count = 0
        for fields in rows:
            if not fields.keys() <= fmap.keys():
                self._check_fields(model, fields)
            row, params = values(model.name, plan, fields, now)
            batches.setdefault(tuple(row), []).append(params)
            count += 1
        with self.transaction():
            for names, params in batches.items():
                try:
                    self.conn.executemany(self._insert_statement(model, names), params)
                except sqlite3.IntegrityError as exc:
                    raise _integrity_error(model, exc, {}) from None
        return count

    @_table_keyword
    def get(self, table: str, id: str) -> dict[str, Any]:
        """The record with this id; RecordNotFoundError if there is none."""
        rows = self.find(table, id=id)
        if not rows:
            raise RecordNotFoundError(table, id)
        return rows[0]

    @_table_keyword
    def first(self, table: str, **equals: Any) -> dict[str, Any] | None:
        """The newest record matching `equals`, or None."""
        rows = self.find(table, order="desc", limit=1, **equals)
        return rows[0] if rows else None

    @_table_keyword
    def find(
        self, table: str, *, order: str = "asc", limit: int | None = None, **equals: Any
    ) -> list[dict[str, Any]]:
        """Records whose fields equal the given values (None matches NULL), newest last."""
        model = self.table(table)
        where, params = self._where(model, equals)
        sql = f"SELECT * FROM {_quote(model.table)} WHERE {where}"
        sql += " ORDER BY rowid DESC" if order == "desc" else " ORDER BY rowid"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._select(model, sql, params)

    def _where(self, model: Model, equals: dict[str, Any]) -> tuple[str, list[Any]]:
        """A WHERE clause for fields equal to values; None matches NULL."""
        self._check_fields(model, equals)
        where, params = [], []
        for name, value in equals.items():
            f = model.fields[name]
            if value is None:
                where.append(f"{_quote(f.column)} IS NULL")
            else:
                where.append(f"{_quote(f.column)} = ?")
                params.append(_to_sql(f, value))
        return " AND ".join(where) or "1", params

    def _select(self, model: Model, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self.conn.execute(sql, list(params))
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        by_column = {f.column: f for f in model.fields.values()}
        keys = [by_column[c].name if c in by_column else c for c in names]
        readers = [_reader(by_column.get(c)) for c in names]
        fields = [by_column.get(c) for c in names]
        out = []
        for row in rows:
            record = {}
            for key, read, value, f in zip(keys, readers, row, fields):
                if read is None:
                    record[key] = value
                    continue
                try:
                    record[key] = read(value)
                except ValueError as exc:
                    record[key] = _bad_json(model, f, record, value, exc)
            out.append(record)
        if model.name in payloads.EXPANDED:
            payloads.expand(self, model.name, out)
        return out

    @_table_keyword
    def update(self, table: str, id: str, **fields: Any) -> dict[str, Any]:
        """Change fields of one record (updatedAt moves) and return the record as it now is."""
        self.set(table, id, **fields)
        return self.get(table, id)

    @_table_keyword
    def set(self, table: str, id: str, **fields: Any) -> None:
        """Change fields of one record (updatedAt moves) without reading it back: for hot paths
        and for rows that hold large text."""
        model = self.table(table)
        self._check_fields(model, fields)
        fields = {k: v for k, v in fields.items() if not model.fields[k].is_id}
        for f in model.fields.values():
            if f.updated_at:
                fields[f.name] = now_iso()
        with self.transaction() if model.name in payloads.EXPANDED else self._lock:
            if model.name in payloads.EXPANDED:
                payloads.before_set(self, model.name, id, fields)
            sets = ", ".join(f"{_quote(model.fields[n].column)} = ?" for n in fields)
            params = [_checked_sql(model.name, model.fields[n], v) for n, v in fields.items()]
            cursor = self.conn.execute(f"UPDATE {_quote(model.table)} SET {sets} WHERE id = ?", [*params, id])
            if cursor.rowcount == 0:
                raise RecordNotFoundError(table, id)

    @_table_keyword
    def append_text(self, table: str, id: str, field_name: str, text: str) -> None:
        """Append to a String field in place (a job's log), without reading it. SQLite rewrites
        the whole value, so this is for short texts: a streamed response is appended as
        ResponseChunk rows instead (aihub_nb.recording)."""
        model = self.table(table)
        self._check_fields(model, [field_name])
        col = _quote(model.fields[field_name].column)
        with self._lock:
            self.conn.execute(
                f'UPDATE {_quote(model.table)} SET {col} = coalesce({col}, \'\') || ?, "updatedAt" = ? WHERE id = ?',
                (text, now_iso(), id),
            )

    @_table_keyword
    def delete(self, table: str, id: str) -> None:
        """Delete one record; RecordNotFoundError if there is none."""
        model = self.table(table)
        with self.transaction():
            if model.name in payloads.EXPANDED:
                payloads.before_delete(self, model.name, id)
            cursor = self.conn.execute(f"DELETE FROM {_quote(model.table)} WHERE id = ?", (id,))
        if cursor.rowcount == 0:
            raise RecordNotFoundError(table, id)

    @_table_keyword
    def count(self, table: str, **equals: Any) -> int:
        """How many records match `equals` (None matches NULL, as in find)."""
        model = self.table(table)
        where, params = self._where(model, equals)
        with self._lock:
            return self.conn.execute(f"SELECT count(*) FROM {_quote(model.table)} WHERE {where}", params).fetchone()[0]

    # -- references

    @_table_keyword
    def set_reference(self, table: str, id: str, name: str, target_id: str | None) -> dict[str, Any]:
        """Set (or, with None, remove) the named reference of a record to another record's id."""
        model = self.table(table)
        path = "$." + json.dumps(name)
        if target_id is None:
            expr, params = 'json_remove("references", ?)', [path]
        else:
            expr, params = 'json_set(coalesce("references", \'{}\'), ?, ?)', [path, target_id]
        with self._lock:
            cursor = self.conn.execute(
                f'UPDATE {_quote(model.table)} SET "references" = {expr}, "updatedAt" = ? WHERE id = ?',
                [*params, now_iso(), id],
            )
        if cursor.rowcount == 0:
            raise RecordNotFoundError(table, id)
        return self.get(table, id)

    def referencing(
        self, target_id: str, *, table: str | None = None, name: str | None = None, model: str | None = None
    ) -> list[dict[str, Any]]:
        """Records whose `references` point at target_id (under `name`, if given), each with its table
        in `_table` (and in `_model`, the older key). `model=` is the older name of `table=`."""
        table = table or model
        models = [self.table(table)] if table else list(self.models.values())
        out = []
        for m in models:
            if "references" not in m.fields:
                continue
            if name is None:
                cond = 'json_valid(t."references") AND EXISTS (SELECT 1 FROM json_each(t."references") WHERE json_each.value = ?)'
                params = [target_id]
            else:
                cond = 'json_valid(t."references") AND json_extract(t."references", ?) = ?'
                params = ["$." + json.dumps(name), target_id]
            rows = self._select(m, f"SELECT * FROM {_quote(m.table)} AS t WHERE {cond} ORDER BY rowid", params)
            for row in rows:
                row["_table"] = row["_model"] = m.name
            out.extend(rows)
        return out

    # -- raw access

    def query(self, sql: str, params: Iterable[Any] | dict = ()) -> list[dict[str, Any]]:
        """Run SQL and return rows as plain dicts (no JSON decoding)."""
        with self._lock:
            cursor = self.conn.execute(sql, params if isinstance(params, dict) else list(params))
            if cursor.description is None:
                return []
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"


def _integrity_error(model: Model, exc: sqlite3.IntegrityError, row: dict[str, Any]) -> StoreError:
    """A UNIQUE failure as one line naming the table, field and value."""
    text = str(exc)
    if text.startswith("UNIQUE constraint failed:"):
        columns = [c.strip().split(".", 1)[-1] for c in text.split(":", 1)[1].split(",")]
        by_column = {f.column: f.name for f in model.fields.values()}
        names = [by_column.get(c, c) for c in columns]
        shown = ", ".join(f"{n}={row.get(n)!r}" for n in names)
        if not row:
            return StoreError(f"{model.name} {', '.join(names)} must be unique; a row repeats one that exists.")
        return StoreError(f"A {model.name} with {shown} exists already; {model.name} {', '.join(names)} must be unique.")
    if text.startswith("NOT NULL constraint failed:"):
        column = text.split(":", 1)[1].strip().split(".", 1)[-1]
        return StoreError(f"{model.name}.{column} cannot be None; give it a value.")
    return StoreError(f"{model.name}: {text}.")


def find_named(store: Store, table: str, name: str, *, kind: str, fix: str, by_id: bool = False, empty: str | None = None) -> dict[str, Any]:
    """The row of `table` called `name` (or, with `by_id`, whose id it is); else a NotFoundError
    that lists the names there are and says how to make one (`fix`)."""
    row = store.first(table, name=name) or (store.first(table, id=name) if by_id else None)
    if row is None:
        names = [r["name"] for r in store.query(f'SELECT name FROM "{store.model(table).table}" ORDER BY rowid')]
        hint = f"{kind}s are: {', '.join(names)}" if names else (empty or f"there are no {kind}s yet")
        raise NotFoundError(f"No {kind} named {name!r} ({hint}); {fix}.")
    return row


def _index_name(model: Model, index) -> str:
    return f"{'uq' if index.unique else 'idx'}_{model.table}_{'_'.join(index.columns)}"


def _column_default(f: Field) -> Any:
    """The DDL default of a column: the schema's literal @default, in its SQL form."""
    if not f.has_default or isinstance(f.default, tuple):
        return None
    if f.type == "Json":
        return f.default if isinstance(f.default, str) else json.dumps(f.default)
    return _to_sql(f, f.default)

