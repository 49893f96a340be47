"""Read schema.prisma: the models, their fields and indexes, as the store needs them.

Only the part of Prisma's schema language that describes tables is read: `model` blocks with
scalar fields (String, Boolean, Int, BigInt, Float, Decimal, DateTime, Json, Bytes, enums),
their `?` and `[]` modifiers, the attributes `@id`, `@default`, `@updatedAt`, `@unique`, `@map`,
and the block attributes `@@index`, `@@unique`, `@@map`. `datasource`, `generator` and `enum`
blocks are recognised; relation fields (a field whose type is another model) are not columns.

    >>> schema = parse_schema('model Note {\\n  id String @id\\n  text String?\\n}')
    >>> schema.models["Note"].fields["text"].optional
    True
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from .errors import SchemaError

__all__ = ["Field", "Index", "Model", "Schema", "load_schema", "parse_schema"]

SCHEMA_PATH = Path(__file__).with_name("schema.prisma")

_SCALARS = {"String", "Boolean", "Int", "BigInt", "Float", "Decimal", "DateTime", "Json", "Bytes"}
_BLOCK = re.compile(r"^\s*(model|enum|datasource|generator|view|type)\s+(\w+)\s*\{\s*$")
_FIELD = re.compile(r"^(\w+)\s+(\w+)(\[\])?(\?)?\s*(.*)$")
_ATTRIBUTE = re.compile(r"@(\w+(?:\.\w+)?)(\((?:[^()]|\((?:[^()]|\([^()]*\))*\))*\))?")
_BLOCK_ATTRIBUTE = re.compile(r"^@@(\w+)\s*\((.*)\)\s*$")


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    column: str
    optional: bool = False
    is_list: bool = False
    is_id: bool = False
    unique: bool = False
    updated_at: bool = False
    default: object = None  # a literal, or a call like ("now",) / ("uuid", "7")
    has_default: bool = False


@dataclass(frozen=True)
class Index:
    columns: tuple[str, ...]
    unique: bool = False


@dataclass
class Model:
    name: str
    table: str
    fields: dict[str, Field] = field(default_factory=dict)
    indexes: list[Index] = field(default_factory=list)


@dataclass
class Schema:
    models: dict[str, Model]
    enums: dict[str, list[str]]
    provider: str | None = None


def parse_schema(text: str) -> Schema:
    """Parse Prisma schema text into models; raise SchemaError naming the line on bad input."""
    blocks = _blocks(text)
    enums = {name: [ln.split()[0] for ln in body] for kind, name, body, _ in blocks if kind == "enum"}
    model_names = {name for kind, name, _, _ in blocks if kind == "model"}
    provider = None
    models: dict[str, Model] = {}
    for kind, name, body, start in blocks:
        if kind == "datasource":
            for line in body:
                m = re.match(r'provider\s*=\s*"([^"]+)"', line)
                if m:
                    provider = m.group(1)
        if kind == "model":
            models[name] = _model(name, body, start, enums, model_names)
    return Schema(models=models, enums=enums, provider=provider)


@cache
def load_schema(path: str | None = None) -> Schema:
    """The schema the package ships (or the one at `path`), parsed once per process."""
    source = Path(path) if path else SCHEMA_PATH
    return parse_schema(source.read_text(encoding="utf-8"))


def _strip_comment(line: str) -> str:
    out, in_string = [], False
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == '"' and (i == 0 or line[i - 1] != "\\"):
            in_string = not in_string
        if not in_string and line.startswith("//", i):
            break
        out.append(ch)
        i += 1
    return "".join(out).strip()


def _blocks(text: str) -> list[tuple[str, str, list[str], int]]:
    blocks = []
    current: tuple[str, str, list[str], int] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw)
        if not line:
            continue
        if current is None:
            m = _BLOCK.match(line)
            if not m:
                raise SchemaError(f"schema.prisma line {number}: expected a block such as `model Name {{`, got {line!r}.")
            current = (m.group(1), m.group(2), [], number)
        elif line == "}":
            blocks.append(current)
            current = None
        else:
            current[2].append(line)
    if current is not None:
        raise SchemaError(f"schema.prisma: block {current[1]!r} opened on line {current[3]} is never closed.")
    return blocks


def _model(name: str, body: list[str], start: int, enums: dict, model_names: set[str]) -> Model:
    model = Model(name=name, table=name)
    for line in body:
        if line.startswith("@@"):
            _block_attribute(model, line)
            continue
        m = _FIELD.match(line)
        if not m:
            raise SchemaError(f"schema.prisma model {name} (line {start}): cannot read field {line!r}.")
        fname, ftype, is_list, optional, rest = m.groups()
        if ftype in model_names:
            continue  # a relation field, not a column
        if ftype not in _SCALARS and ftype not in enums:
            raise SchemaError(f"schema.prisma model {name}: field {fname!r} has unknown type {ftype!r}.")
        attrs = {a: (args[1:-1] if args else None) for a, args in _ATTRIBUTE.findall(rest)}
        default, has_default = None, "default" in attrs
        if has_default:
            default = _default_value(attrs["default"])
        column = _string_arg(attrs["map"]) if attrs.get("map") else fname
        model.fields[fname] = Field(
            name=fname,
            type="String" if ftype in enums else ftype,
            column=column,
            optional=bool(optional),
            is_list=bool(is_list),
            is_id="id" in attrs,
            unique="unique" in attrs,
            updated_at="updatedAt" in attrs,
            default=default,
            has_default=has_default,
        )
        if "unique" in attrs:
            model.indexes.append(Index(columns=(fname,), unique=True))
    return model


def _block_attribute(model: Model, line: str) -> None:
    m = _BLOCK_ATTRIBUTE.match(line)
    if not m:
        raise SchemaError(f"schema.prisma model {model.name}: cannot read {line!r}.")
    kind, args = m.groups()
    if kind in ("index", "unique"):
        names = re.match(r"\s*(?:fields\s*:\s*)?\[([^\]]*)\]", args)
        if not names:
            raise SchemaError(f"schema.prisma model {model.name}: cannot read the fields of {line!r}.")
        columns = tuple(re.sub(r"\(.*\)", "", c).strip() for c in names.group(1).split(",") if c.strip())
        model.indexes.append(Index(columns=columns, unique=kind == "unique"))
    elif kind == "map":
        model.table = _string_arg(args)


def _string_arg(args: str) -> str:
    m = re.match(r'\s*(?:name\s*:\s*)?"([^"]*)"', args)
    if not m:
        raise SchemaError(f"schema.prisma: expected a quoted name, got {args!r}.")
    return m.group(1)


def _default_value(arg: str | None) -> object:
    arg = (arg or "").strip()
    if arg.startswith('"'):
        try:  # Prisma's string escapes are JSON's: \" \\ \n \uXXXX; other text stays as written
            return json.loads(arg, strict=False)
        except ValueError:
            return re.sub(r"\\(.)", r"\1", arg[1:-1])
    if arg in ("true", "false"):
        return arg == "true"
    call = re.match(r"(\w+)\((.*)\)$", arg)
    if call:
        return (call.group(1), call.group(2).strip()) if call.group(2).strip() else (call.group(1),)
    try:
        return int(arg)
    except ValueError:
        try:
            return float(arg)
        except ValueError:
            return arg  # an enum value
