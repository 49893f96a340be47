"""schema.prisma: it holds the seed design, Prisma itself accepts it, and our parser reads it as Prisma does."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from aihub_nb.errors import SchemaError, StoreError
from aihub_nb.prisma import SCHEMA_PATH, load_schema, parse_schema
from aihub_nb.store import Store

ROOT = Path(__file__).resolve().parents[1]
VALIDATOR = ROOT / ".ci" / "prisma_validate.js"

# The seed design (ai-hub-database-design.md), written out by hand: every `Table_X` interface is
# model X; `T?` is optional; number is Float; Record<...>, objects and arrays are Json.
RECORD = {"id": "String", "references": "Json", "createdAt": "DateTime", "updatedAt": "DateTime"}
USER_MANAGED = {**RECORD, "name": "String", "description": "String"}
DESIGN = {
    "UserSettings": {
        **RECORD,
        "sidebarOpen": "Boolean",
        "lastPage": "String",
        "theme": "String",
        "bootstrapped": "Boolean",
    },
    "Metric": {**RECORD, "name": "String", "dimensions": "Json", "value": "Float"},
    "TextLog": {**RECORD, "text": "String"},
    "NetworkCall": {
        **RECORD,
        "endpoint": "String",
        "method": "String",
        "body": "String",
        "response": "String",
        "status": "String",
    },
    "Jobs": {**RECORD, "name": "String", "type": "String", "status": "String", "textLogId": "String"},
    "ModelConnections": {
        **USER_MANAGED,
        "provider": "String",
        "modelId": "String",
        "type": "String",
        "data": "Json",
    },
    "MessageThread": {**RECORD, "lockingJob": "String?"},
    "Message": {**RECORD, "threadId": "String", "type": "String", "sourceId": "String", "content": "String"},
    "RenderedConversationThread": {**RECORD, "messages": "Json"},
    "Chat": {**USER_MANAGED, "type": "String", "sourceId": "String"},
    "Agent": {**USER_MANAGED, "chatModelId": "String"},
    "AgentToolConnection": {**RECORD, "agentId": "String", "toolId": "String", "permission": "String"},
    "Tool": {**USER_MANAGED, "type": "String", "schema": "Json", "data": "Json"},
    "ToolInvocation": {
        **RECORD,
        "toolId": "String",
        "parameters": "Json",
        "result": "Json",
        "textLogId": "String",
        "status": "String",
    },
    "ResponseStream": {
        **RECORD,
        "sourceId": "String",
        "resultMessages": "Json",
        "status": "String",
        "rawOutput": "String",
    },
}

SQL_TYPES = {"String": "TEXT", "Json": "TEXT", "DateTime": "TEXT", "Boolean": "INTEGER", "Float": "REAL"}

# A schema with every part of the language the parser reads; valid Prisma (checked below).
SAMPLE = r"""
// A comment line; the parser skips it.
datasource db {
  provider = "sqlite"
}

generator client {
  provider = "prisma-client"
  output   = "./generated"
}

enum Role {
  USER
  ADMIN
}

model Author {
  id        String   @id @default(uuid(7))
  name      String   @map("display_name") // a trailing comment
  role      Role     @default(USER)
  nickname  String?
  motto     String   @default("say \"hi\" // not a comment, café")
  score     Float    @default(1.5)
  rank      Int      @default(3)
  active    Boolean  @default(true)
  createdAt DateTime @default(now())
  updatedAt DateTime @updatedAt
  posts     Post[]

  @@index([name])
  @@map("authors")
}

model Post {
  id       String @id @default(uuid(7))
  title    String @unique
  meta     Json   @default("{\"a\": [1, 2]}")
  authorId String @map("author_id")
  author   Author @relation(fields: [authorId], references: [id])

  @@unique([title, authorId])
  @@index([authorId(sort: Desc)], map: "post_author")
}
"""


def _design_type(field) -> str:
    return field.type + ("?" if field.optional else "") + ("[]" if field.is_list else "")


# ---------------------------------------------------------------- the design is in schema.prisma


def test_every_design_model_and_field_is_in_schema_prisma_with_its_type():
    models = load_schema().models
    missing_models = sorted(set(DESIGN) - set(models))
    assert missing_models == []
    wrong = {
        (model, name): (expected, _design_type(models[model].fields[name]) if name in models[model].fields else None)
        for model, fields in DESIGN.items()
        for name, expected in fields.items()
        if name not in models[model].fields or _design_type(models[model].fields[name]) != expected
    }
    assert wrong == {}


def test_every_model_follows_the_record_conventions():
    for model in load_schema().models.values():
        f = model.fields
        assert f["id"].is_id and f["id"].default == ("uuid", "7"), model.name
        assert f["references"].type == "Json" and f["references"].default == "{}", model.name
        assert f["createdAt"].type == "DateTime" and f["createdAt"].default == ("now",), model.name
        assert f["updatedAt"].type == "DateTime" and f["updatedAt"].updated_at, model.name


def test_a_fresh_store_has_a_table_and_column_for_every_design_field(store):
    tables = {
        table: {r["name"]: r for r in store.query(f'PRAGMA table_info("{table}")')}
        for table in (r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'table'"))
    }
    for model, fields in DESIGN.items():
        assert model in tables, f"no table {model}"
        for name, kind in fields.items():
            column = tables[model].get(name)
            assert column is not None, f"no column {model}.{name}"
            assert column["type"] == SQL_TYPES[kind.rstrip("?")], f"{model}.{name}"
            assert column["notnull"] == (0 if kind.endswith("?") else 1), f"{model}.{name}"
        assert tables[model]["id"]["pk"] == 1


def test_every_declared_index_exists_in_the_file(store):
    for model in store.models.values():
        in_file = {
            (tuple(r["name"] for r in store.query(f'PRAGMA index_info("{ix["name"]}")')), bool(ix["unique"]))
            for ix in store.query(f'PRAGMA index_list("{model.table}")')
        }
        for index in model.indexes:
            columns = tuple(model.fields[c].column for c in index.columns)
            assert (columns, index.unique) in in_file, f"{model.name}: no index on {columns}"
    assert len(store.models["Message"].indexes) >= 1  # the thread index below is declared


def test_listing_a_threads_messages_uses_the_thread_index(store):
    thread = store.create("MessageThread")
    for i in range(3):
        store.create("Message", threadId=thread["id"], type="user", content=str(i))
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    try:
        messages = store.find("Message", threadId=thread["id"])
    finally:
        store.conn.set_trace_callback(None)
    assert [m["content"] for m in messages] == ["0", "1", "2"]
    (select,) = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    plan = " ".join(r["detail"] for r in store.query("EXPLAIN QUERY PLAN " + select))
    assert "USING INDEX idx_Message_threadId_createdAt" in plan, plan


# ---------------------------------------------------------------- Prisma's own parser


def _prisma(*args: str) -> subprocess.CompletedProcess:
    """Run .ci/prisma_validate.js (Prisma's Wasm schema parser); skip when node or the package is absent."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the Prisma schema check needs it (.ci/run installs @prisma/prisma-schema-wasm)")
    if not VALIDATOR.exists():
        pytest.skip(f"{VALIDATOR} is not here (the check runs from a source checkout)")
    result = subprocess.run([node, str(VALIDATOR), *args], capture_output=True, text=True, timeout=120)
    if result.returncode == 3:
        pytest.skip(result.stderr.strip())
    return result


def test_schema_prisma_is_valid_prisma():
    result = _prisma(str(SCHEMA_PATH))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("valid")


def test_prisma_validation_rejects_a_broken_schema(tmp_path):
    broken = SCHEMA_PATH.read_text(encoding="utf-8").replace("value      Float", "value      Flaot", 1)
    assert "Flaot" in broken
    path = tmp_path / "broken.prisma"
    path.write_text(broken, encoding="utf-8")
    result = _prisma(str(path))
    assert result.returncode == 1
    assert 'Type "Flaot" is neither a built-in type' in result.stderr


@pytest.mark.parametrize("text", [SCHEMA_PATH.read_text(encoding="utf-8"), SAMPLE], ids=["schema.prisma", "sample"])
def test_our_parser_reads_models_as_prisma_does(tmp_path, text):
    path = tmp_path / "schema.prisma"
    path.write_text(text, encoding="utf-8")
    result = _prisma("--dmmf", str(path))
    assert result.returncode == 0, result.stderr
    datamodel = json.loads(result.stdout)
    ours = parse_schema(text)
    enums = {e["name"] for e in datamodel["enums"]}

    theirs = {}
    for m in datamodel["models"]:
        fields = {}
        for f in m["fields"]:
            if f["kind"] == "object":
                continue  # a relation, not a column
            default = f.get("default")
            fields[f["name"]] = {
                "type": "String" if f["type"] in enums else f["type"],
                "column": f.get("dbName") or f["name"],
                "optional": not f["isRequired"],
                "is_list": f["isList"],
                "is_id": f["isId"],
                "updated_at": f["isUpdatedAt"],
                "has_default": f["hasDefaultValue"],
                "default": default["name"] if isinstance(default, dict) else default,
            }
        theirs[m["name"]] = {"table": m.get("dbName") or m["name"], "fields": fields}
    mine = {
        m.name: {
            "table": m.table,
            "fields": {
                f.name: {
                    "type": f.type,
                    "column": f.column,
                    "optional": f.optional,
                    "is_list": f.is_list,
                    "is_id": f.is_id,
                    "updated_at": f.updated_at,
                    "has_default": f.has_default,
                    "default": f.default[0] if isinstance(f.default, tuple) else f.default,
                }
                for f in m.fields.values()
            },
        }
        for m in ours.models.values()
    }
    assert mine == theirs

    their_indexes = sorted(
        (ix["model"], tuple(f["name"] for f in ix["fields"]), ix["type"] == "unique")
        for ix in datamodel["indexes"]
        if ix["type"] in ("normal", "unique")
    )
    my_indexes = sorted((m.name, ix.columns, ix.unique) for m in ours.models.values() for ix in m.indexes)
    assert my_indexes == their_indexes
    assert sorted(ours.enums) == sorted(enums)


# ---------------------------------------------------------------- our parser on its own


def test_parser_reads_map_optional_enums_and_skips_relations():
    schema = parse_schema(SAMPLE)
    assert schema.provider == "sqlite"
    assert schema.enums == {"Role": ["USER", "ADMIN"]}
    author, post = schema.models["Author"], schema.models["Post"]
    assert author.table == "authors" and post.table == "Post"
    assert author.fields["name"].column == "display_name"
    assert post.fields["authorId"].column == "author_id"
    assert author.fields["nickname"].optional and not author.fields["name"].optional
    assert author.fields["role"].type == "String" and author.fields["role"].default == "USER"
    assert "posts" not in author.fields and "author" not in post.fields
    assert author.fields["motto"].default == 'say "hi" // not a comment, café'
    assert author.fields["active"].default is True
    assert (author.fields["score"].default, author.fields["rank"].default) == (1.5, 3)
    assert post.fields["meta"].default == '{"a": [1, 2]}'
    assert {ix.columns: ix.unique for ix in post.indexes} == {
        ("title",): True,
        ("title", "authorId"): True,
        ("authorId",): False,
    }


def test_parser_reads_scalar_lists():
    # SQLite has no scalar lists, so this is our parser only (Prisma rejects it for sqlite).
    fields = parse_schema("model A {\n  id String @id\n  tags String[]\n  scores Float[]\n}").models["A"].fields
    assert (fields["tags"].type, fields["tags"].is_list, fields["tags"].optional) == ("String", True, False)
    assert (fields["scores"].type, fields["scores"].is_list) == ("Float", True)
    assert not fields["id"].is_list


def test_a_store_creates_tables_from_a_custom_schema(tmp_path):
    store = Store(tmp_path / "custom.db", schema=parse_schema(SAMPLE))
    try:
        columns = [r["name"] for r in store.query('PRAGMA table_info("authors")')]
        assert "display_name" in columns and "posts" not in columns
        author = store.create("Author", name="Ada")
        assert store.get("Author", author["id"])["name"] == "Ada"
        assert store.query('SELECT display_name, role, motto FROM "authors"') == [
            {"display_name": "Ada", "role": "USER", "motto": 'say "hi" // not a comment, café'}
        ]
        post = store.create("Post", title="On engines", authorId=author["id"])
        assert store.get("Post", post["id"])["meta"] == {"a": [1, 2]}
        with pytest.raises(StoreError, match="must be unique"):
            store.create("Post", title="On engines", authorId="someone else")
    finally:
        store.close()


@pytest.mark.parametrize(
    "text, message",
    [
        ("this is not prisma", r"line 1: expected a block"),
        ("model A {\n  id String @id\n", r"block 'A' opened on line 1 is never closed"),
        ("model A {\n  id Strin @id\n}", r"field 'id' has unknown type 'Strin'"),
        ("model A {\n  id String @id\n  ???\n}", r"model A \(line 1\): cannot read field '\?\?\?'"),
        ("model A {\n  id String @id\n  @@index(name)\n}", r"cannot read the fields of '@@index\(name\)'"),
    ],
)
def test_parser_names_what_is_wrong_with_garbage(text, message):
    with pytest.raises(SchemaError, match=message):
        parse_schema(text)
