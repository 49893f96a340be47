"""Describe Python functions as model tools, and check the arguments a model sends back.

`function_spec` turns a function's signature, type hints and docstring into the
``{"name", "description", "parameters"}`` dict that OpenAI's
``tools=[{"type": "function", "function": spec}]`` and Ollama's ``tools`` take.
`coerce_arguments` parses and validates the argument text a model returns, and
`call_kwargs` turns the validated JSON values back into the Python values the
annotations ask for (tuples, sets, Enum members, dataclass instances).

Example:

    >>> from typing import Literal
    >>> def get_weather(city: str, unit: Literal["c", "f"] = "c") -> str:
    ...     '''Current weather for a city.
    ...
    ...     Args:
    ...         city: Name of the city, e.g. "Oslo".
    ...         unit: Temperature unit.
    ...     '''
    ...     return f"12 degrees {unit} in {city}"
    >>> spec = function_spec(get_weather)
    >>> spec["description"]
    'Current weather for a city.'
    >>> spec["parameters"]["properties"]["unit"]
    {'type': 'string', 'enum': ['c', 'f'], 'default': 'c', 'description': 'Temperature unit.'}
    >>> spec["parameters"]["required"]
    ['city']
    >>> args = coerce_arguments(spec["parameters"], '{"city": "Oslo"}')
    >>> get_weather(**call_kwargs(get_weather, args))
    '12 degrees c in Oslo'
    >>> try:
    ...     coerce_arguments(spec["parameters"], '{"city": 7, "unit": "k"}')
    ... except ToolArgumentsError as exc:
    ...     for problem in exc.errors:
    ...         print(problem)
    'city' must be string, got integer 7
    'unit' must be one of "c", "f", got string "k"

Only the standard library is used; `validate` implements the JSON Schema
keywords that tool schemas use (see its docstring), not the whole standard.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import functools
import inspect
import json
import math
import re
import types
import typing
from typing import Any

from aihub_nb.errors import ToolArgumentsError, ToolError

__all__ = ["call_kwargs", "coerce_arguments", "function_spec", "validate"]

_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_SUPPORTED = (
    "str, int, float, bool, None, list, tuple, set, dict, Literal, Union, "
    "an Enum, a TypedDict or a dataclass"
)


# --------------------------------------------------------------------------- function_spec


def function_spec(fn: Any, *, name: str | None = None, description: str | None = None) -> dict:
    """Describe `fn` as a tool: ``{"name": ..., "description": ..., "parameters": <JSON Schema>}``.

    `name` defaults to ``fn.__name__`` and must match ``^[a-zA-Z0-9_-]{1,64}$``.
    `description` defaults to the docstring's text before its first section
    (Args, Parameters, Returns, ``:param``...); per-parameter descriptions come
    from Google, NumPy or Sphinx parameter sections, or from
    ``Annotated[X, "text"]``, which wins. Raises ToolError for ``*args``,
    ``**kwargs``, positional-only parameters, bad names and types JSON Schema
    cannot express.
    """
    fn_name = name if name is not None else _callable_name(fn)
    if not isinstance(fn_name, str) or not _NAME_RE.match(fn_name):
        suggestion = re.sub(r"[^a-zA-Z0-9_-]", "_", str(fn_name))[:64] or "tool"
        raise ToolError(
            f"Tool name {fn_name!r} is invalid: it must be 1-64 letters, digits, '_' or '-' "
            f"(OpenAI's rule); pass name={suggestion!r}."
        )
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ToolError(f"Cannot read the signature of tool {fn_name!r}: {exc}.") from None
    hints = _type_hints(fn, fn_name)
    doc_description, doc_params = _parse_docstring(inspect.getdoc(_unwrap_partial(fn)))

    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in signature.parameters.values():
        _check_parameter_kind(param, fn_name)
        try:
            schema = _schema_for(hints.get(param.name, Any))
        except _UnsupportedType as exc:
            raise ToolError(
                f"Parameter {param.name!r} of tool {fn_name!r} has type {_type_name(exc.tp)}, "
                f"which JSON Schema cannot express; use {_SUPPORTED}."
            ) from None
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
        else:
            if param.default is None and _problems(schema, None, "", schema):
                schema = _nullable(schema)  # `x: int = None`: the model may send the default back
            default = _json_default(param.default)
            if default is not _MISSING:
                schema["default"] = default
        if "description" not in schema and doc_params.get(param.name):
            schema["description"] = doc_params[param.name]
        properties[param.name] = schema

    return {
        "name": fn_name,
        "description": doc_description if description is None else description,
        "parameters": {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        },
    }


class _UnsupportedType(Exception):
    def __init__(self, tp: Any) -> None:
        super().__init__(tp)
        self.tp = tp


_MISSING = object()


def _unwrap_partial(fn: Any) -> Any:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def _callable_name(fn: Any) -> str:
    fn = _unwrap_partial(fn)
    name = getattr(fn, "__name__", None)
    return name if isinstance(name, str) else type(fn).__name__


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else repr(tp)


def _check_parameter_kind(param: inspect.Parameter, fn_name: str) -> None:
    if param.kind is inspect.Parameter.VAR_POSITIONAL:
        raise ToolError(
            f"Tool {fn_name!r} takes *{param.name}; a model calls a tool with named JSON arguments, "
            f"so replace it with a named parameter such as {param.name}: list[str]."
        )
    if param.kind is inspect.Parameter.VAR_KEYWORD:
        raise ToolError(
            f"Tool {fn_name!r} takes **{param.name}; a model needs every argument spelled out, "
            f"so list the parameters by name instead."
        )
    if param.kind is inspect.Parameter.POSITIONAL_ONLY:
        raise ToolError(
            f"Parameter {param.name!r} of tool {fn_name!r} is positional-only; tools are called "
            f"with keyword arguments, so remove the '/' from the signature."
        )


def _type_hints(fn: Any, fn_name: str) -> dict[str, Any]:
    """Resolved annotations of `fn` (a function, method, partial or callable object)."""
    target = _unwrap_partial(fn)
    if isinstance(target, type):
        target = target.__init__
    elif not (inspect.isfunction(target) or inspect.ismethod(target)) and callable(target):
        target = getattr(type(target), "__call__", target)
    try:
        return typing.get_type_hints(target, include_extras=True)
    except NameError as exc:
        raise ToolError(
            f"Cannot resolve the type hints of tool {fn_name!r}: {exc}; "
            f"define the types at module level."
        ) from None
    except TypeError:
        return {}


def _json_default(value: Any) -> Any:
    """`value` as JSON (Enum members as their value, tuples and sets as lists), or _MISSING."""
    if isinstance(value, enum.Enum):
        value = value.value
    elif isinstance(value, (tuple, set, frozenset)):
        value = list(value)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return _MISSING
    return value


def _strip_wrappers(tp: Any) -> Any:
    """`tp` without Required[] / NotRequired[] (which TypedDict hints keep with include_extras)."""
    while typing.get_origin(tp) in (typing.Required, typing.NotRequired):
        tp = typing.get_args(tp)[0]
    return tp


def _schema_for(tp: Any, seen: tuple[type, ...] = ()) -> dict:
    """The JSON Schema of Python type `tp`; raises _UnsupportedType."""
    tp = _strip_wrappers(tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if origin is typing.Annotated:
        schema = _schema_for(args[0], seen)
        for meta in args[1:]:
            if isinstance(meta, str):
                schema["description"] = meta
            elif isinstance(meta, dict):
                schema.update(meta)
        return schema
    if tp is Any or tp is object or tp is inspect.Parameter.empty:
        return {}
    if tp is None or tp is type(None):
        return {"type": "null"}
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    if origin is typing.Literal:
        return _enum_schema(list(args))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        values = [member.value for member in tp]
        if not all(_is_json_scalar(v) for v in values):
            raise _UnsupportedType(tp)
        return _enum_schema(values)
    if origin in (typing.Union, types.UnionType):
        return _union_schema(args, seen)
    if tp in _ARRAYS or origin in _ARRAYS:
        return _array_schema(origin or tp, args, seen)
    if tp in _MAPPINGS or origin in _MAPPINGS:
        return _mapping_schema(tp, args, seen)
    if typing.is_typeddict(tp) or dataclasses.is_dataclass(tp):
        if tp in seen:  # a recursive type: describe the inner level loosely
            return {"type": "object"}
        return _class_schema(tp, seen + (tp,))
    raise _UnsupportedType(tp)


_SCALARS: dict[Any, str] = {str: "string", bool: "boolean", int: "integer", float: "number"}
_ARRAYS = (
    list,
    tuple,
    set,
    frozenset,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Set,
    collections.abc.MutableSet,
)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def _is_json_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _enum_schema(values: list) -> dict:
    kinds: list[str] = []
    for value in values:
        kind = _json_type(value)
        if kind not in kinds:
            kinds.append(kind)
    if "integer" in kinds and "number" in kinds:
        kinds.remove("integer")
    return {"type": kinds[0] if len(kinds) == 1 else kinds, "enum": list(values)}


def _union_schema(args: tuple, seen: tuple[type, ...]) -> dict:
    options = [a for a in args if a is not type(None) and a is not None]
    nullable = len(options) < len(args)
    if len(options) == 1:
        schema = _schema_for(options[0], seen)
        return _nullable(schema) if nullable else schema
    any_of = [_schema_for(option, seen) for option in options]
    if nullable:
        any_of.append({"type": "null"})
    return {"anyOf": any_of}


def _nullable(schema: dict) -> dict:
    """`schema` that also accepts null: a type list for simple schemas, anyOf otherwise."""
    if not schema:
        return schema
    schema = dict(schema)
    description = schema.pop("description", None)
    kind = schema.get("type")
    if kind is not None and set(schema) <= {"type", "enum"}:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        if "null" not in kinds:
            kinds.append("null")
        schema["type"] = kinds
        if "enum" in schema and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
    elif kind != "null":
        schema = {"anyOf": [schema, {"type": "null"}]}
    if description is not None:
        schema["description"] = description
    return schema


def _array_schema(origin: Any, args: tuple, seen: tuple[type, ...]) -> dict:
    schema: dict[str, Any] = {"type": "array"}
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        schema["prefixItems"] = [_schema_for(a, seen) for a in args]
        schema["minItems"] = schema["maxItems"] = len(args)
        return schema
    if args:
        schema["items"] = _schema_for(args[0], seen)
    if origin in (set, frozenset, collections.abc.Set, collections.abc.MutableSet):
        schema["uniqueItems"] = True
    return schema


def _mapping_schema(tp: Any, args: tuple, seen: tuple[type, ...]) -> dict:
    schema: dict[str, Any] = {"type": "object"}
    if args:
        key, value = args
        if key not in (str, Any):
            raise _UnsupportedType(tp)  # JSON object keys are always strings
        value_schema = _schema_for(value, seen)
        if value_schema:
            schema["additionalProperties"] = value_schema
    return schema


def _class_schema(cls: type, seen: tuple[type, ...]) -> dict:
    """Object schema of a TypedDict or dataclass."""
    hints = typing.get_type_hints(cls, include_extras=True)
    properties: dict[str, Any] = {}
    required: list[str] = []
    if typing.is_typeddict(cls):
        for key, hint in hints.items():
            properties[key] = _schema_for(hint, seen)
        required = [key for key in hints if key in cls.__required_keys__]
    else:
        for field in dataclasses.fields(cls):
            if not field.init:
                continue
            schema = _schema_for(hints.get(field.name, Any), seen)
            if field.default is not dataclasses.MISSING:
                default = _json_default(field.default)
                if default is not _MISSING:
                    schema["default"] = default
            elif field.default_factory is dataclasses.MISSING:
                required.append(field.name)
            properties[field.name] = schema
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


# --------------------------------------------------------------------------- docstrings

_PARAM_SECTIONS = {
    "args",
    "arguments",
    "parameters",
    "params",
    "keyword args",
    "keyword arguments",
    "other parameters",
    "other arguments",
}
_SECTIONS = _PARAM_SECTIONS | {
    "attributes",
    "example",
    "examples",
    "methods",
    "note",
    "notes",
    "raise",
    "raises",
    "references",
    "return",
    "returns",
    "see also",
    "todo",
    "warning",
    "warnings",
    "warns",
    "yield",
    "yields",
}
_GOOGLE_HEADER = re.compile(r"^\s*([A-Za-z][A-Za-z ]*?)\s*:\s*$")
_NUMPY_RULE = re.compile(r"^\s*-{3,}\s*$")
_SPHINX_FIELD = re.compile(r"^\s*:(\w+)((?:\s+[^:]+?)?)\s*:(.*)$")
_SPHINX_PARAM_FIELDS = {"param", "parameter", "arg", "argument", "key", "keyword"}
_GOOGLE_ENTRY = re.compile(r"^\s*\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:(.*)$")
_NUMPY_ENTRY = re.compile(r"^\s*(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?::.*)?$")


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(description, {parameter: description}) from a Google, NumPy or Sphinx docstring."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    params: dict[str, str] = {}
    first_section = len(lines)
    i = 0
    while i < len(lines):
        kind, title = _section_at(lines, i)
        if kind is None:
            i += 1
            continue
        first_section = min(first_section, i)
        if kind == "numpy":
            end = i + 2
            while end < len(lines) and _section_at(lines, end)[0] != "numpy":
                end += 1
            if title in _PARAM_SECTIONS:
                _numpy_params(lines[i + 2 : end], params)
        elif kind == "google":
            end = _indented_block_end(lines, i, allow_blank=True)
            if title in _PARAM_SECTIONS:
                _google_params(lines[i + 1 : end], params)
        else:
            end = _indented_block_end(lines, i, allow_blank=False)
            match = _SPHINX_FIELD.match(lines[i])
            field, argument = match.group(1), match.group(2).split()
            if field in _SPHINX_PARAM_FIELDS and argument:
                text = [match.group(3)] + lines[i + 1 : end]
                params[argument[-1].lstrip("*")] = _join(text)
        i = end
    return "\n".join(lines[:first_section]).strip(), params


def _section_at(lines: list[str], i: int) -> tuple[str | None, str]:
    """('numpy' | 'google' | 'sphinx' | None, lower-cased title) for the line at `i`."""
    line = lines[i]
    stripped = line.strip()
    if stripped and i + 1 < len(lines) and _NUMPY_RULE.match(lines[i + 1]) and not _NUMPY_RULE.match(line):
        return "numpy", stripped.lower()
    match = _GOOGLE_HEADER.match(line)
    if match and match.group(1).lower() in _SECTIONS:
        return "google", match.group(1).lower()
    if _SPHINX_FIELD.match(line):
        return "sphinx", ""
    return None, ""


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _indented_block_end(lines: list[str], start: int, *, allow_blank: bool) -> int:
    """Index after the lines following `start` that are indented deeper than it."""
    end = start + 1
    while end < len(lines):
        line = lines[end]
        if not line.strip():
            if not allow_blank:
                break
        elif _indent(line) <= _indent(lines[start]):
            break
        end += 1
    return end


def _join(parts: list[str]) -> str:
    return " ".join(part.strip() for part in parts if part.strip())


def _google_params(body: list[str], params: dict[str, str]) -> None:
    """`name (type): text` entries, continued on deeper-indented lines."""
    entry_indent = next((_indent(line) for line in body if line.strip()), 0)
    name: str | None = None
    for line in body:
        if not line.strip():
            continue
        match = _GOOGLE_ENTRY.match(line)
        if match and _indent(line) <= entry_indent:
            name = match.group(1)
            params[name] = _join([match.group(2)])
        elif name is not None and _indent(line) > entry_indent:
            params[name] = _join([params[name], line])


def _numpy_params(body: list[str], params: dict[str, str]) -> None:
    """`name : type` entries (or `x, y : type`) followed by deeper-indented description lines."""
    entry_indent = next((_indent(line) for line in body if line.strip()), 0)
    names: list[str] = []
    for line in body:
        if not line.strip():
            continue
        if _indent(line) > entry_indent:
            for name in names:
                params[name] = _join([params[name], line])
            continue
        match = _NUMPY_ENTRY.match(line)
        names = [n.strip().lstrip("*") for n in match.group(1).split(",")] if match else []
        for name in names:
            params[name] = ""


# --------------------------------------------------------------------------- validation


def validate(schema: dict, value: Any) -> None:
    """Check `value` against JSON Schema `schema`; raise ToolArgumentsError listing every problem.

    Supported keywords: type (a name or a list of names), properties, required,
    additionalProperties (bool or schema), items, prefixItems, enum, const,
    anyOf, oneOf, allOf, minimum, maximum, exclusiveMinimum, exclusiveMaximum
    (numbers, or draft-4 booleans), minLength, maxLength, pattern, minItems,
    maxItems, uniqueItems and local $ref. Other keywords (default,
    description, format...) are ignored. "integer" accepts 3 and 3.0 but not
    3.5 or true; "number" does not accept booleans.

    The error's message reads e.g. ``Arguments do not fit the tool's schema:
    'b' is required; 'a' must be integer, got string "x".`` and its `.errors`
    attribute holds the problems as a list.
    """
    problems = _problems(schema, value, "", schema)
    if problems:
        raise _arguments_error(problems)


_SCHEMA_PREFIX = "Arguments do not fit the tool's schema: "
_INVALID_PREFIX = "Arguments are invalid: "


def _arguments_error(problems: list[str], prefix: str = _SCHEMA_PREFIX) -> ToolArgumentsError:
    """One ToolArgumentsError whose message joins `problems` and whose .errors lists them."""
    unique = list(dict.fromkeys(problems))
    error = ToolArgumentsError(prefix + "; ".join(unique) + ".")
    error.errors = unique
    return error


def _problems(schema: Any, value: Any, path: str, root: Any) -> list[str]:
    problems: list[str] = []
    _check(schema, value, path, root, problems)
    return problems


def _label(path: str) -> str:
    return f"'{path}'" if path else "the arguments"


def _dump(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _describe(value: Any) -> str:
    """`string "x"`, `integer 3`, `null`, `array`: the kind and, for scalars, the value."""
    kind = _json_type(value)
    if value is None or kind in ("array", "object"):
        return kind
    text = _dump(value) if _is_json_scalar(value) else repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{kind} {text}"


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        if isinstance(value, float):
            return value.is_integer()
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    checks = {
        "null": lambda v: v is None,
        "boolean": lambda v: isinstance(v, bool),
        "string": lambda v: isinstance(v, str),
        "array": lambda v: isinstance(v, (list, tuple)),
        "object": lambda v: isinstance(v, dict),
    }
    return checks.get(kind, lambda v: True)(value)


def _types_of(schema: Any) -> list[str]:
    kind = schema.get("type") if isinstance(schema, dict) else None
    if kind is None:
        return []
    return [kind] if isinstance(kind, str) else list(kind)


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: true is not 1, 1 is 1.0, arrays and objects compare deeply."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def _resolve_ref(root: Any, ref: str) -> Any:
    if not ref.startswith("#"):
        raise ToolError(
            f"Cannot follow $ref {ref!r}: only references inside the schema ('#/...') are supported."
        )
    node = root
    for part in filter(None, ref[1:].split("/")):
        part = part.replace("~1", "/").replace("~0", "~")
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise ToolError(f"Cannot follow $ref {ref!r}: the schema has no such definition.") from None
    return node


def _check(schema: Any, value: Any, path: str, root: Any, problems: list[str]) -> None:
    if schema is True or schema == {}:
        return
    if schema is False:
        problems.append(f"{_label(path)} is not allowed")
        return
    if "$ref" in schema:
        _check(_resolve_ref(root, schema["$ref"]), value, path, root, problems)
    kinds = _types_of(schema)
    if kinds and not any(_is_type(value, kind) for kind in kinds):
        problems.append(f"{_label(path)} must be {' or '.join(kinds)}, got {_describe(value)}")
        return
    if "const" in schema and not _json_equal(value, schema["const"]):
        problems.append(f"{_label(path)} must be {_dump(schema['const'])}, got {_describe(value)}")
    if "enum" in schema and not any(_json_equal(value, option) for option in schema["enum"]):
        options = ", ".join(_dump(option) for option in schema["enum"])
        problems.append(f"{_label(path)} must be one of {options}, got {_describe(value)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(schema, value, path, problems)
    elif isinstance(value, str):
        _check_string(schema, value, path, problems)
    elif isinstance(value, (list, tuple)):
        _check_array(schema, value, path, root, problems)
    elif isinstance(value, dict):
        _check_object(schema, value, path, root, problems)
    for branch in schema.get("allOf", ()):
        _check(branch, value, path, root, problems)
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:
            _check_alternatives(keyword, schema[keyword], value, path, root, problems)


def _check_number(schema: dict, value: float, path: str, problems: list[str]) -> None:
    got = _dump(value) if math.isfinite(value) else repr(value)
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    low, high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if low is True:  # draft 4: a boolean that makes minimum exclusive
        low, minimum = minimum, None
    if high is True:
        high, maximum = maximum, None
    if isinstance(minimum, (int, float)) and value < minimum:
        problems.append(f"{_label(path)} must be at least {_dump(minimum)}, got {got}")
    if isinstance(low, (int, float)) and not isinstance(low, bool) and value <= low:
        problems.append(f"{_label(path)} must be greater than {_dump(low)}, got {got}")
    if isinstance(maximum, (int, float)) and value > maximum:
        problems.append(f"{_label(path)} must be at most {_dump(maximum)}, got {got}")
    if isinstance(high, (int, float)) and not isinstance(high, bool) and value >= high:
        problems.append(f"{_label(path)} must be less than {_dump(high)}, got {got}")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _check_string(schema: dict, value: str, path: str, problems: list[str]) -> None:
    label, size = _label(path), len(value)
    if "minLength" in schema and size < schema["minLength"]:
        least = _plural(schema["minLength"], "character")
        problems.append(f"{label} must be at least {least} long, got {size}")
    if "maxLength" in schema and size > schema["maxLength"]:
        most = _plural(schema["maxLength"], "character")
        problems.append(f"{label} must be at most {most} long, got {size}")
    if "pattern" in schema:
        pattern = schema["pattern"]
        try:
            matched = re.search(pattern, value)
        except re.error as exc:
            message = f"The schema's pattern {pattern!r} is not a valid regular expression: {exc}."
            raise ToolError(message) from None
        if not matched:
            problems.append(f"{label} must match the pattern {pattern!r}, got {_describe(value)}")


def _check_array(schema: dict, value: list, path: str, root: Any, problems: list[str]) -> None:
    label, size = _label(path), len(value)
    if "minItems" in schema and size < schema["minItems"]:
        problems.append(f"{label} must have at least {_plural(schema['minItems'], 'item')}, got {size}")
    if "maxItems" in schema and size > schema["maxItems"]:
        problems.append(f"{label} must have at most {_plural(schema['maxItems'], 'item')}, got {size}")
    if schema.get("uniqueItems") and any(
        _json_equal(value[i], value[j]) for i in range(len(value)) for j in range(i)
    ):
        problems.append(f"{label} must not contain duplicate items")
    prefix = schema.get("prefixItems", [])
    items = schema.get("items", True)
    if isinstance(items, list):  # the older tuple form of items
        prefix, items = items, schema.get("additionalItems", True)
    for index, item in enumerate(value):
        item_schema = prefix[index] if index < len(prefix) else items
        _check(item_schema, item, f"{path}[{index}]", root, problems)


def _check_object(schema: dict, value: dict, path: str, root: Any, problems: list[str]) -> None:
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key in schema.get("required", ()):
        if key not in value:
            problems.append(f"{_label(_join_path(path, key))} is required")
    for key, item in value.items():
        key_path = _join_path(path, key)
        if key in properties:
            _check(properties[key], item, key_path, root, problems)
        elif extra is False:
            allowed = ", ".join(repr(name) for name in properties) or "none"
            problems.append(f"{_label(key_path)} is not allowed (allowed: {allowed})")
        else:
            _check(extra, item, key_path, root, problems)


def _join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else str(key)


def _check_alternatives(
    keyword: str, branches: list, value: Any, path: str, root: Any, problems: list[str]
) -> None:
    results = [_problems(branch, value, path, root) for branch in branches]
    matches = sum(1 for result in results if not result)
    if matches == 1 or (matches and keyword == "anyOf"):
        return
    if matches > 1:
        problems.append(f"{_label(path)} must match exactly one alternative, but matches {matches}")
        return
    # Nothing matched. Branches that expect another JSON type only say "must be X";
    # if some branch has the right type, its problems are the useful ones.
    wrong_types: list[str] = []
    near: list[list[str]] = []
    for branch, result in zip(branches, results):
        if isinstance(branch, dict) and "$ref" in branch:
            branch = _resolve_ref(root, branch["$ref"])
        kinds = _types_of(branch)
        if kinds and not any(_is_type(value, kind) for kind in kinds):
            wrong_types.extend(kind for kind in kinds if kind not in wrong_types)
        else:
            near.append(result)
    if not near:
        problems.append(f"{_label(path)} must be {' or '.join(wrong_types)}, got {_describe(value)}")
    elif len(near) == 1:
        problems.extend(near[0])
    else:
        options = " or ".join("(" + ", ".join(result) + ")" for result in near)
        problems.append(f"{_label(path)} does not match any allowed form: {options}")


# --------------------------------------------------------------------------- arguments


def coerce_arguments(schema: dict, arguments: str | bytes | dict | None) -> dict:
    """Parse a model's tool-call arguments and validate them against `schema`.

    `arguments` is the JSON text a model sent (OpenAI), an already-decoded dict
    (Ollama), or None / "" for a call without arguments (both give {}). A JSON
    string that itself holds a JSON object (double-encoded) is decoded once
    more. Raises ToolArgumentsError for invalid JSON, a value that is not an
    object, or arguments that do not fit the schema.
    """
    if isinstance(arguments, (bytes, bytearray)):
        arguments = arguments.decode("utf-8", errors="replace")
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        parsed: Any = {}
    elif isinstance(arguments, str):
        parsed = _parse_json(arguments)
        if isinstance(parsed, str) and parsed.strip().startswith("{"):
            parsed = _parse_json(parsed)
    else:
        parsed = arguments
    if not isinstance(parsed, dict):
        problem = f"the arguments must be a JSON object, got {_describe(parsed)}"
        raise _arguments_error([problem], prefix=_INVALID_PREFIX)
    validate(schema, parsed)
    return parsed


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        snippet = text if len(text) <= 60 else text[:57] + "..."
        problem = f"the arguments are not valid JSON ({exc}): {snippet}"
        raise _arguments_error([problem], prefix=_INVALID_PREFIX) from None


def call_kwargs(fn: Any, arguments: dict) -> dict:
    """Keyword arguments for `fn` from validated JSON `arguments`.

    Converts where the annotation asks for it: arrays to tuple / set / frozenset,
    values to Enum members, objects to dataclass instances, integers to float
    for float parameters and integral floats (3.0) to int for int parameters,
    recursively inside lists, dicts, TypedDicts and Optional / Union types.
    Everything else passes through unchanged.
    """
    hints = _type_hints(fn, _callable_name(fn))
    return {key: _to_python(hints.get(key, Any), value) for key, value in arguments.items()}


def _to_python(tp: Any, value: Any) -> Any:
    tp = _strip_wrappers(tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _to_python(args[0], value)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        return _union_to_python(args, value)
    if tp is float and type(value) is int:
        return float(value)
    if tp is int and type(value) is float and value.is_integer():
        return int(value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if isinstance(value, (list, tuple)) and (tp in _ARRAYS or origin in _ARRAYS):
        return _array_to_python(origin or tp, args, value)
    if isinstance(value, dict):
        if origin in _MAPPINGS and args:
            return {key: _to_python(args[1], item) for key, item in value.items()}
        if typing.is_typeddict(tp):
            hints = typing.get_type_hints(tp, include_extras=True)
            return {key: _to_python(hints.get(key, Any), item) for key, item in value.items()}
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            hints = typing.get_type_hints(tp, include_extras=True)
            return tp(**{key: _to_python(hints.get(key, Any), item) for key, item in value.items()})
    return value


def _union_to_python(args: tuple, value: Any) -> Any:
    """Convert with the first member of the union whose schema `value` fits."""
    for option in args:
        if option is type(None):
            continue
        try:
            schema = _schema_for(option)
        except _UnsupportedType:
            continue
        if not _problems(schema, value, "", schema):
            return _to_python(option, value)
    return value


def _array_to_python(origin: Any, args: tuple, value: list) -> Any:
    if origin is tuple:
        if args and not (len(args) == 2 and args[1] is Ellipsis):
            return tuple(_to_python(arg, item) for arg, item in zip(args, value))
        return tuple(_to_python(args[0], item) for item in value) if args else tuple(value)
    items = [_to_python(args[0], item) for item in value] if args else list(value)
    if origin in (set, collections.abc.Set, collections.abc.MutableSet):
        return set(items)
    if origin is frozenset:
        return frozenset(items)
    return items
