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

The libraries do the work: pydantic writes each parameter's JSON Schema and
converts validated values back (`TypeAdapter`), docstring_parser reads Google,
NumPy and Sphinx docstrings, and jsonschema validates (Draft 2020-12); this
module shapes the schema for OpenAI's tool format (no ``$defs``/``$ref``, no
titles, closed objects) and words jsonschema's errors as one line per problem.
All three are imported on first use, not with this module.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import functools
import importlib
import inspect
import json
import math
import re
import sys
import threading
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
    for param in signature.parameters.values():
        _check_parameter_kind(param, fn_name)
    adapters = _adapters(fn, fn_name)
    doc_description, doc_params = _parse_docstring(inspect.getdoc(_unwrap_partial(fn)))

    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in signature.parameters.values():
        schema = _parameter_schema(adapters[param.name])
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
        else:
            if param.default is None and not _accepts_null(schema):
                schema = _nullable(schema)  # `x: int = None`: the model may send the default back
            default = _json_default(param.default)
            if default is not _MISSING:
                schema["default"] = default
        if "description" not in schema and doc_params.get(param.name):
            schema["description"] = doc_params[param.name]
        properties[param.name] = _ordered(schema)

    _import_validator_soon()
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


@functools.cache
def _import_validator_soon() -> None:
    """Import jsonschema in the background, once: its import loads every optional format checker
    installed (rfc3987-syntax, which Jupyter pulls in, compiles a grammar for a second or more),
    and a tool defined now is first validated later, after a model's reply."""
    if "jsonschema" not in sys.modules:
        threading.Thread(target=importlib.import_module, args=("jsonschema",), daemon=True).start()


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


def _hints_target(fn: Any) -> Any:
    """The object whose annotations describe `fn`'s parameters (a function, class or __call__)."""
    target = _unwrap_partial(fn)
    if inspect.ismethod(target):
        return target.__func__
    if isinstance(target, type) or inspect.isfunction(target) or not callable(target):
        return target
    return getattr(type(target), "__call__", target)


def _adapters(fn: Any, fn_name: str) -> dict[str, Any]:
    """{parameter: pydantic TypeAdapter} of `fn`'s own parameters, built once per function."""
    target = _hints_target(fn)
    try:
        return _cached_adapters(target, fn_name)
    except TypeError:  # an unhashable callable
        return _build_adapters(target, fn_name)


def _build_adapters(target: Any, fn_name: str) -> dict[str, Any]:
    from pydantic import PydanticSchemaGenerationError, PydanticUserError, TypeAdapter

    hints = _type_hints(target, fn_name)
    adapters: dict[str, Any] = {}
    for param in inspect.signature(target).parameters.values():
        try:
            adapters[param.name] = TypeAdapter(_pydantic_type(hints.get(param.name, Any)))
        except (_UnsupportedType, PydanticSchemaGenerationError, PydanticUserError) as exc:
            tp = exc.tp if isinstance(exc, _UnsupportedType) else hints.get(param.name)
            raise ToolError(
                f"Parameter {param.name!r} of tool {fn_name!r} has type {_type_name(tp)}, "
                f"which JSON Schema cannot express; use {_SUPPORTED}."
            ) from None
    return adapters


_cached_adapters = functools.lru_cache(maxsize=512)(_build_adapters)


def _type_hints(target: Any, fn_name: str) -> dict[str, Any]:
    """Resolved annotations of `target` (a function, class or __call__)."""
    if isinstance(target, type):
        target = target.__init__
    try:
        return typing.get_type_hints(target, include_extras=True)
    except NameError as exc:
        raise ToolError(
            f"Cannot resolve the type hints of tool {fn_name!r}: {exc}; "
            f"define the types at module level."
        ) from None
    except TypeError:
        return {}


_SCALARS = (str, bool, int, float)
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


def _pydantic_type(tp: Any, seen: tuple[type, ...] = ()) -> Any:
    """`tp` as pydantic should read it, or _UnsupportedType for what JSON cannot carry.

    ``Annotated[X, "text"]`` becomes a Field description and ``Annotated[X, {...}]``
    extra schema keywords; a ``typing.TypedDict`` is rebuilt as typing_extensions'
    (which pydantic needs before Python 3.12); dict keys must be strings.
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Required, typing.NotRequired):
        return origin[_pydantic_type(args[0], seen)]
    if origin is typing.Annotated:
        return typing.Annotated[(_pydantic_type(args[0], seen), *map(_field_of, args[1:]))]
    if tp is Any or tp is object or tp is inspect.Parameter.empty:
        return Any
    if tp is None or tp is type(None) or tp in _SCALARS or origin is typing.Literal:
        return tp
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if not all(m.value is None or isinstance(m.value, (str, int, float, bool)) for m in tp):
            raise _UnsupportedType(tp)
        return tp
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_pydantic_type(a, seen) for a in args)]
    if tp in _ARRAYS or tp in _MAPPINGS:
        return tp
    if origin in _ARRAYS:
        return origin[tuple(a if a is Ellipsis else _pydantic_type(a, seen) for a in args)]
    if origin in _MAPPINGS:
        if args[0] not in (str, Any):
            raise _UnsupportedType(tp)  # JSON object keys are always strings
        return origin[str, _pydantic_type(args[1], seen)]
    if typing.is_typeddict(tp):
        if tp in seen:  # a recursive TypedDict: its inner level is any object
            return dict[str, Any]
        hints = typing.get_type_hints(tp, include_extras=True)
        return _typeddict(tp, {key: _pydantic_type(hint, seen + (tp,)) for key, hint in hints.items()})
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if tp not in seen:  # pydantic reads the class itself; this only checks its fields
            hints = typing.get_type_hints(tp, include_extras=True)
            for field in dataclasses.fields(tp):
                if field.init:
                    _pydantic_type(hints.get(field.name, Any), seen + (tp,))
        return tp
    raise _UnsupportedType(tp)


def _typeddict(cls: Any, fields: dict[str, Any]) -> Any:
    import typing_extensions

    marked = {}
    for key, hint in fields.items():
        while typing.get_origin(hint) in (typing.Required, typing.NotRequired):
            hint = typing.get_args(hint)[0]
        marked[key] = (typing.Required if key in cls.__required_keys__ else typing.NotRequired)[hint]
    return typing_extensions.TypedDict(cls.__name__, marked)


def _field_of(meta: Any) -> Any:
    from pydantic import Field

    if isinstance(meta, str):
        return Field(description=meta)
    if isinstance(meta, dict):
        return Field(json_schema_extra=meta)
    return meta


def _parameter_schema(adapter: Any) -> dict:
    """The adapter's JSON Schema, shaped for a tool: references inlined, no titles."""
    schema = adapter.json_schema(schema_generator=_schema_generator())
    return _tidy(schema, schema.pop("$defs", {}), ())


@functools.cache
def _schema_generator() -> type:
    from pydantic.json_schema import GenerateJsonSchema

    class ToolSchema(GenerateJsonSchema):
        def field_is_present(self, field: Any) -> bool:  # not a dataclass field with init=False
            return field.get("init", True) is not False and super().field_is_present(field)

    return ToolSchema


def _tidy(node: Any, defs: dict, seen: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_tidy(item, defs, seen) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    ref = node.pop("$ref", None)
    if ref is not None:
        name = ref.rsplit("/", 1)[-1]
        # a recursive type: describe the inner level loosely
        target = {"type": "object"} if name in seen else _tidy(defs[name], defs, seen + (name,))
        node = {**target, **_tidy(node, defs, seen)}
    node.pop("title", None)
    for key in ("items", "additionalProperties", "not"):
        if key in node:
            node[key] = _tidy(node[key], defs, seen)
    for key in ("prefixItems", "anyOf", "oneOf", "allOf"):
        if key in node:
            node[key] = [_tidy(item, defs, seen) for item in node[key]]
    if "properties" in node:
        node["properties"] = {k: _tidy(v, defs, seen) for k, v in node["properties"].items()}
        node.setdefault("required", [])
        node.setdefault("additionalProperties", False)
    if node.get("items") == {}:
        del node["items"]
    if node.get("additionalProperties") is True:
        del node["additionalProperties"]
    if "const" in node and "enum" not in node:
        node["enum"] = [node.pop("const")]
    if "enum" in node:
        node["type"] = _enum_type(node["enum"])
    if "anyOf" in node:
        node = _simplify_any_of(node)
    return _ordered(node)


def _simplify_any_of(node: dict) -> dict:
    """``anyOf`` with an empty branch is anything; ``X | None`` reads as X made nullable."""
    branches = node["anyOf"]
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if {} in branches:
        return rest
    others = [b for b in branches if b != {"type": "null"}]
    if len(others) == 1 and len(branches) == 2:
        return {**_nullable(others[0]), **rest}
    return node


_KINDS = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), ((list, tuple), "array"), (dict, "object"))


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return next((kind for cls, kind in _KINDS if isinstance(value, cls)), type(value).__name__)


def _enum_type(values: list) -> str | list[str]:
    kinds = list(dict.fromkeys(_json_kind(v) for v in values))
    if "integer" in kinds and "number" in kinds:
        kinds.remove("integer")
    return kinds[0] if len(kinds) == 1 else kinds


def _nullable(schema: dict) -> dict:
    """`schema` that also accepts null: a type list for simple schemas, anyOf otherwise."""
    if not schema:
        return schema
    schema = dict(schema)
    description = schema.pop("description", None)
    kind = schema.get("type")
    if kind is not None and set(schema) <= {"type", "enum"}:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        schema["type"] = kinds if "null" in kinds else [*kinds, "null"]
        if "enum" in schema and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
    elif kind != "null":
        schema = {"anyOf": [schema, {"type": "null"}]}
    if description is not None:
        schema["description"] = description
    return schema


def _accepts_null(schema: dict) -> bool:
    """Whether a schema shaped by `_tidy` takes null: any value, a "null" type, or a branch that does."""
    if not schema.keys() - {"description", "default"}:
        return True
    kinds = schema.get("type", [])
    if "null" in ([kinds] if isinstance(kinds, str) else kinds):
        return None in schema.get("enum", [None])
    return any(_accepts_null(branch) for branch in schema.get("anyOf", ()))


_KEY_RANK = {"type": 0, "enum": 1, "default": 98, "description": 99}


def _ordered(schema: dict) -> dict:
    """`schema` with its keys in reading order: type and enum first, default and description last."""
    return dict(sorted(schema.items(), key=lambda item: _KEY_RANK.get(item[0], 50)))


def _json_default(value: Any) -> Any:
    """`value` as JSON (Enum members as their value, tuples and sets as lists), or _MISSING."""
    from pydantic_core import to_jsonable_python

    try:
        value = to_jsonable_python(value)
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return _MISSING
    return value


# --------------------------------------------------------------------------- docstrings


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(description, {parameter: description}) from a Google, NumPy or Sphinx docstring."""
    if not doc:
        return "", {}
    import docstring_parser

    parsed = docstring_parser.parse(doc)
    text = parsed.short_description or ""
    if parsed.long_description:
        text += ("\n\n" if parsed.blank_after_short_description else "\n") + parsed.long_description
    params: dict[str, str] = {}
    for param in parsed.params:
        for name in param.arg_name.split(","):  # NumPy's `b, c : float`
            params[name.strip().lstrip("*")] = " ".join((param.description or "").split())
    return text.strip(), params


# --------------------------------------------------------------------------- validation


def validate(schema: dict, value: Any) -> None:
    """Check `value` against JSON Schema `schema` (Draft 2020-12); raise ToolArgumentsError
    listing every problem.

    Draft-4 forms that tool schemas written by hand still use are read too: boolean
    exclusiveMinimum / exclusiveMaximum and the array form of items. Only references
    inside the schema (``#/...``) are followed. "integer" accepts 3 and 3.0 but not
    3.5 or true; "number" does not accept booleans.

    The error's message reads e.g. ``Arguments do not fit the tool's schema:
    'b' is required; 'a' must be integer, got string "x".`` and its `.errors`
    attribute holds the problems as a list.
    """
    problems = _problems(schema, value)
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


def _problems(schema: Any, value: Any) -> list[str]:
    from referencing.exceptions import PointerToNowhere, Unresolvable

    validator = _validator(json.dumps(schema))
    try:
        errors = list(validator.iter_errors(value))
    except re.error as exc:
        message = f"The schema's pattern {exc.pattern!r} is not a valid regular expression: {exc}."
        raise ToolError(message) from None
    except Unresolvable as exc:
        cause = exc.__cause__ or exc  # jsonschema wraps referencing's error
        if isinstance(cause, PointerToNowhere):
            raise ToolError(f"Cannot follow $ref '#{cause.ref}': the schema has no such definition.") from None
        raise ToolError(
            f"Cannot follow $ref {cause.ref!r}: only references inside the schema ('#/...') are supported."
        ) from None
    entries = [entry for error in errors for entry in _entries(error, validator, value)]
    return list(dict.fromkeys(message for _, message in _sorted(entries, value)))


@functools.lru_cache(maxsize=256)
def _validator(schema_text: str) -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Registry

    # An empty registry: a reference outside the schema fails instead of being fetched.
    return Draft202012Validator(_upgrade(json.loads(schema_text)), registry=Registry())


_DATA_KEYWORDS = ("enum", "const", "default", "examples")


def _upgrade(node: Any) -> Any:
    """`node` with draft-4 boolean exclusiveMinimum/Maximum and tuple-form items in 2020-12 form."""
    if isinstance(node, list):
        return [_upgrade(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {k: v if k in _DATA_KEYWORDS else _upgrade(v) for k, v in node.items()}
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(exclusive), bool):
            if node.pop(exclusive) and bound in node:
                node[exclusive] = node.pop(bound)
    if isinstance(node.get("items"), list):
        node["prefixItems"] = node.pop("items")
        if "additionalItems" in node:
            node["items"] = node.pop("additionalItems")
    return node


# One problem: (path to the value, rank among its siblings' problems, message, is a type error).
_Entry = tuple[tuple, int, str, bool]


def _entries(error: Any, validator: Any, root: Any) -> list[_Entry]:
    """jsonschema's `error` worded as today's one-line problems."""
    path, keyword, expected, value = tuple(error.absolute_path), error.validator, error.validator_value, error.instance
    label = _label(path)

    def one(message: str, at: tuple = path, rank: int = 1, is_type: bool = False) -> list[_Entry]:
        return [(at, rank, message, is_type)]

    if keyword == "type":
        kinds = [expected] if isinstance(expected, str) else list(expected)
        return one(f"{label} must be {' or '.join(kinds)}, got {_describe(value)}", is_type=True)
    if keyword is None:  # the `false` schema
        return one(f"{label} is not allowed")
    if keyword == "required":
        return [(path, 0, f"{_label(path + (key,))} is required", False) for key in expected if key not in value]
    if keyword == "additionalProperties" and expected is False:
        allowed = list(error.schema.get("properties", {}))
        names = ", ".join(repr(name) for name in allowed) or "none"
        patterns = list(error.schema.get("patternProperties", {}))
        extras = [k for k in value if k not in allowed and not any(re.search(p, k) for p in patterns)]
        return [(path + (key,), 1, f"{_label(path + (key,))} is not allowed (allowed: {names})", False) for key in extras]
    if keyword == "items" and expected is False:
        start = len(error.schema.get("prefixItems", []))
        return [(path + (i,), 1, f"{_label(path + (i,))} is not allowed", False) for i in range(start, len(value))]
    if keyword in ("anyOf", "oneOf"):
        return _alternatives(error, validator, root)
    if keyword in ("enum", "const"):
        options = [expected] if keyword == "const" else expected
        wording = "one of " if keyword == "enum" else ""
        return one(f"{label} must be {wording}{', '.join(_dump(o) for o in options)}, got {_describe(value)}")
    if keyword in _BOUNDS:
        got = _dump(value) if math.isfinite(value) else repr(value)
        return one(f"{label} must be {_BOUNDS[keyword]} {_dump(expected)}, got {got}")
    if keyword in ("minLength", "maxLength"):
        least = "at least" if keyword == "minLength" else "at most"
        return one(f"{label} must be {least} {_plural(expected, 'character')} long, got {len(value)}")
    if keyword in ("minItems", "maxItems"):
        least = "at least" if keyword == "minItems" else "at most"
        return one(f"{label} must have {least} {_plural(expected, 'item')}, got {len(value)}")
    if keyword == "uniqueItems":
        return one(f"{label} must not contain duplicate items")
    if keyword == "pattern":
        return one(f"{label} must match the pattern {expected!r}, got {_describe(value)}")
    return one(f"{label} does not fit the schema: {' '.join(error.message.split())}")


_BOUNDS = {
    "minimum": "at least",
    "exclusiveMinimum": "greater than",
    "maximum": "at most",
    "exclusiveMaximum": "less than",
}


def _alternatives(error: Any, validator: Any, root: Any) -> list[_Entry]:
    """anyOf / oneOf: the types expected, the problems of the one branch of the right type,
    or each near branch's problems."""
    path, value, branches = tuple(error.absolute_path), error.instance, error.validator_value
    label = _label(path)
    if not error.context:  # oneOf, and more than one branch matched
        matches = sum(1 for branch in branches if validator.evolve(schema=branch).is_valid(value))
        return [(path, 1, f"{label} must match exactly one alternative, but matches {matches}", False)]
    by_branch: dict[int, list] = {}
    for sub in error.context:
        by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
    wrong_types: list[str] = []
    near: list[list[_Entry]] = []
    for subs in by_branch.values():
        kinds = [s.validator_value for s in subs if s.validator == "type" and not s.relative_path]
        if kinds:
            for kind in kinds:
                wrong_types += [k for k in ([kind] if isinstance(kind, str) else kind) if k not in wrong_types]
        else:
            near.append([entry for sub in subs for entry in _entries(sub, validator, root)])
    if not near:
        return [(path, 1, f"{label} must be {' or '.join(wrong_types)}, got {_describe(value)}", True)]
    if len(near) == 1:
        return near[0]
    forms = " or ".join("(" + ", ".join(m for _, m in _sorted(entries, root)) + ")" for entries in near)
    return [(path, 1, f"{label} does not match any allowed form: {forms}", False)]


def _sorted(entries: list[_Entry], root: Any) -> list[tuple[tuple, str]]:
    """Problems in the order of the value: an object's missing keys first, then its keys in
    order; nothing more about a value that has the wrong type."""
    wrong = [at for at, _, _, is_type in entries if is_type]
    kept = [
        (_position(root, at) + (rank,), message)
        for at, rank, message, is_type in entries
        if is_type or not any(at[: len(w)] == w for w in wrong)
    ]
    return sorted(kept, key=lambda entry: entry[0])


def _position(root: Any, path: tuple) -> tuple[int, ...]:
    positions, node = [], root
    for part in path:
        if isinstance(node, dict) and part in node:
            positions.append(list(node).index(part) + 1)
            node = node[part]
        elif isinstance(node, (list, tuple)) and isinstance(part, int) and part < len(node):
            positions.append(part + 1)
            node = node[part]
        else:
            positions.append(0)
    return tuple(positions)


def _label(path: tuple) -> str:
    if not path:
        return "the arguments"
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
    return f"'{text.removeprefix('.')}'"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _dump(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _describe(value: Any) -> str:
    """`string "x"`, `integer 3`, `null`, `array`: the kind and, for scalars, the value."""
    kind = _json_kind(value)
    if value is None or kind in ("array", "object"):
        return kind
    is_scalar = isinstance(value, (str, int, float, bool))
    text = _dump(value) if is_scalar else repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{kind} {text}"


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

    pydantic converts where the annotation asks for it: arrays to tuple / set /
    frozenset, values to Enum members, objects to dataclass instances, integers
    to float for float parameters and integral floats (3.0) to int for int
    parameters, recursively inside lists, dicts, TypedDicts and Optional / Union
    types. Raises ToolArgumentsError naming the argument when a value cannot be
    converted (a dataclass whose __post_init__ refuses it).
    """
    from pydantic import ValidationError

    adapters = _adapters(fn, _callable_name(fn))
    kwargs = {}
    for key, value in arguments.items():
        adapter = adapters.get(key)
        try:
            # None passes as it is: `x: int = None` takes back its default
            kwargs[key] = value if adapter is None or value is None else adapter.validate_python(value)
        except ValidationError as exc:
            problems = []
            for problem in exc.errors(include_url=False):
                where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in problem["loc"])
                problems.append(f"'{key}{where}': {' '.join(problem['msg'].split())}")
            raise _arguments_error(problems, prefix="Arguments cannot be converted: ") from None
    return kwargs
