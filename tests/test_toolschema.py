"""Tests for aihub_nb.toolschema: function_spec, validate, coerce_arguments, call_kwargs."""

import dataclasses
import datetime
import doctest
import enum
import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Dict, List, Literal, NotRequired, Optional, TypedDict, Union

import pytest

from aihub_nb import toolschema
from aihub_nb.errors import ToolArgumentsError, ToolError
from aihub_nb.toolschema import call_kwargs, coerce_arguments, function_spec, validate


# --------------------------------------------------------------------------- fixtures (module level,
# so typing.get_type_hints can resolve them)


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Movie(TypedDict):
    title: str
    year: NotRequired[int]


class Options(TypedDict, total=False):
    verbose: bool


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0
    tags: list[str] = dataclasses.field(default_factory=list)
    label: str = dataclasses.field(default="", init=False)


@dataclasses.dataclass
class Node:
    name: str
    children: list["Node"] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Shape:
    color: Color
    corners: tuple[Point, ...]


def props(fn, **kwargs):
    return function_spec(fn, **kwargs)["parameters"]["properties"]


def schema_of(annotation):
    """The schema function_spec gives a single required parameter of type `annotation`."""

    def tool(x):
        pass

    tool.__annotations__ = {"x": annotation}
    return props(tool)["x"]


def problems(schema, value):
    with pytest.raises(ToolArgumentsError) as info:
        validate(schema, value)
    return info.value.errors


# --------------------------------------------------------------------------- function_spec: shape


def test_spec_shape_and_top_level_schema():
    def add(a: int, b: int = 2) -> int:
        """Add two numbers."""
        return a + b

    assert function_spec(add) == {
        "name": "add",
        "description": "Add two numbers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer", "default": 2}},
            "required": ["a"],
            "additionalProperties": False,
        },
    }


def test_no_parameters_and_no_docstring():
    def ping():
        pass

    spec = function_spec(ping)
    assert spec["description"] == ""
    assert spec["parameters"] == {"type": "object", "properties": {}, "required": [], "additionalProperties": False}


def test_name_and_description_overrides():
    def f(x: str):
        """Docstring text."""

    spec = function_spec(f, name="search-web_2", description="Search the web.")
    assert spec["name"] == "search-web_2"
    assert spec["description"] == "Search the web."


@pytest.mark.parametrize("bad", ["has space", "x" * 65, "", "naïve", "a.b"])
def test_bad_names_are_rejected(bad):
    def f():
        pass

    with pytest.raises(ToolError, match=r"must be 1-64 letters, digits, '_' or '-'"):
        function_spec(f, name=bad)


def test_lambda_name_is_rejected_with_a_suggestion():
    with pytest.raises(ToolError, match=r"Tool name '<lambda>' is invalid.*pass name='_lambda_'"):
        function_spec(lambda: None)


def test_sixty_four_character_name_is_allowed():
    def f():
        pass

    assert function_spec(f, name="n" * 64)["name"] == "n" * 64


def test_star_args_rejected():
    def f(a: int, *rest: int):
        pass

    with pytest.raises(ToolError, match=r"Tool 'f' takes \*rest; .*named parameter"):
        function_spec(f)


def test_star_kwargs_rejected():
    def f(a: int, **options: str):
        pass

    with pytest.raises(ToolError, match=r"Tool 'f' takes \*\*options; .*list the parameters by name"):
        function_spec(f)


def test_positional_only_rejected():
    def f(a: int, /, b: int):
        pass

    with pytest.raises(ToolError, match=r"Parameter 'a' of tool 'f' is positional-only"):
        function_spec(f)


def test_bound_method_skips_self():
    class Calculator:
        def scale(self, value: float, factor: float = 2.0) -> float:
            """Scale a value."""
            return value * factor

    spec = function_spec(Calculator().scale)
    assert spec["name"] == "scale"
    assert list(spec["parameters"]["properties"]) == ["value", "factor"]
    assert spec["parameters"]["required"] == ["value"]


def test_partial_uses_the_wrapped_function():
    def greet(name: str, greeting: str) -> str:
        """Greet someone."""
        return f"{greeting}, {name}"

    spec = function_spec(functools.partial(greet, greeting="Hi"))
    assert spec["name"] == "greet"
    assert spec["description"] == "Greet someone."
    assert spec["parameters"]["required"] == ["name"]
    assert spec["parameters"]["properties"]["greeting"] == {"type": "string", "default": "Hi"}


def test_callable_object_uses_its_call_annotations():
    class Tool:
        """Look something up."""

        def __call__(self, query: str, limit: int = 5):
            pass

    spec = function_spec(Tool(), name="lookup")
    assert spec["description"] == "Look something up."
    assert spec["parameters"]["properties"] == {"query": {"type": "string"}, "limit": {"type": "integer", "default": 5}}


# --------------------------------------------------------------------------- function_spec: types


@pytest.mark.parametrize(
    "annotation, expected",
    [
        (str, {"type": "string"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (None, {"type": "null"}),
        (type(None), {"type": "null"}),
        (Any, {}),
        (list, {"type": "array"}),
        (list[int], {"type": "array", "items": {"type": "integer"}}),
        (List[str], {"type": "array", "items": {"type": "string"}}),
        (tuple, {"type": "array"}),
        (tuple[int, ...], {"type": "array", "items": {"type": "integer"}}),
        (
            tuple[int, str],
            {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "minItems": 2, "maxItems": 2},
        ),
        (set[str], {"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
        (frozenset[int], {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}),
        (dict, {"type": "object"}),
        (dict[str, Any], {"type": "object"}),
        (dict[str, int], {"type": "object", "additionalProperties": {"type": "integer"}}),
        (Dict[str, float], {"type": "object", "additionalProperties": {"type": "number"}}),
        (
            list[dict[str, int]],
            {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "integer"}}},
        ),
        (
            dict[str, list[bool]],
            {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "boolean"}}},
        ),
        (Optional[int], {"type": ["integer", "null"]}),
        (str | None, {"type": ["string", "null"]}),
        (Optional[Any], {}),
        (Optional[list[int]], {"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}]}),
        (Literal["a", "b"], {"type": "string", "enum": ["a", "b"]}),
        (Literal[1, 2], {"type": "integer", "enum": [1, 2]}),
        (Literal[1, 2.5], {"type": "number", "enum": [1, 2.5]}),
        (Literal[True], {"type": "boolean", "enum": [True]}),
        (Literal["a", 1], {"type": ["string", "integer"], "enum": ["a", 1]}),
        (Optional[Literal["a", "b"]], {"type": ["string", "null"], "enum": ["a", "b", None]}),
        (Union[int, str], {"anyOf": [{"type": "integer"}, {"type": "string"}]}),
        (int | list[str], {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "string"}}]}),
        (Union[int, str, None], {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]}),
        (Color, {"type": "string", "enum": ["red", "green"]}),
        (Level, {"type": "integer", "enum": [1, 2]}),
        (Optional[Color], {"type": ["string", "null"], "enum": ["red", "green", None]}),
        (list[Color], {"type": "array", "items": {"type": "string", "enum": ["red", "green"]}}),
        (Annotated[int, "How many."], {"type": "integer", "description": "How many."}),
        (Annotated[int, {"minimum": 1}], {"type": "integer", "minimum": 1}),
        (
            Optional[Annotated[str, "A name."]],
            {"type": ["string", "null"], "description": "A name."},
        ),
    ],
)
def test_type_mapping(annotation, expected):
    assert schema_of(annotation) == expected


def test_unannotated_parameter_is_any():
    def f(x, y=3):
        pass

    assert props(f) == {"x": {}, "y": {"default": 3}}


def test_typeddict_parameter():
    assert schema_of(Movie) == {
        "type": "object",
        "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
        "required": ["title"],
        "additionalProperties": False,
    }
    assert schema_of(Options)["required"] == []


def test_dataclass_parameter():
    assert schema_of(Point) == {
        "type": "object",
        "properties": {
            "x": {"type": "number"},
            "y": {"type": "number", "default": 0.0},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["x"],
        "additionalProperties": False,
    }


def test_optional_dataclass_uses_any_of():
    schema = schema_of(Optional[Point])
    assert schema["anyOf"][1] == {"type": "null"}
    assert schema["anyOf"][0]["required"] == ["x"]


def test_recursive_dataclass_terminates():
    schema = schema_of(Node)
    assert schema["properties"]["children"] == {"type": "array", "items": {"type": "object"}}


def test_unsupported_type_is_rejected_naming_the_parameter():
    def f(when: datetime.datetime):
        pass

    with pytest.raises(ToolError, match=r"Parameter 'when' of tool 'f' has type datetime, which JSON Schema cannot"):
        function_spec(f)


def test_dict_with_non_string_keys_is_rejected():
    def f(counts: dict[int, str]):
        pass

    with pytest.raises(ToolError, match=r"Parameter 'counts'"):
        function_spec(f)


def test_unresolvable_annotation_is_a_tool_error():
    def f(x: "NoSuchType"):  # noqa: F821
        pass

    with pytest.raises(ToolError, match=r"Cannot resolve the type hints of tool 'f'.*NoSuchType"):
        function_spec(f)


# --------------------------------------------------------------------------- function_spec: defaults


def test_defaults_and_required():
    sentinel = object()

    def f(
        a: int,
        b: str = "x",
        c: Optional[int] = None,
        d: Color = Color.GREEN,
        e: tuple[int, int] = (1, 2),
        f: Any = sentinel,
        g: float = float("nan"),
    ):
        pass

    spec = function_spec(f)["parameters"]
    assert spec["required"] == ["a"]
    p = spec["properties"]
    assert p["b"]["default"] == "x"
    assert p["c"] == {"type": ["integer", "null"], "default": None}
    assert p["d"]["default"] == "green"
    assert p["e"]["default"] == [1, 2]
    assert "default" not in p["f"]  # not JSON-serialisable: left out, still optional
    assert "default" not in p["g"]  # NaN is not JSON


# --------------------------------------------------------------------------- function_spec: docstrings


def google_style(city: str, days: int = 1, units: str = "metric"):
    """Get the weather forecast.

    Looks the city up first, then
    asks the weather service.

    Args:
        city (str): Name of the city,
            for example "Oslo".
        days: How many days
            ahead to forecast.

            Default: 1.
        units: "metric" or "imperial".

    Returns:
        dict: The forecast.

    Raises:
        ValueError: If the city is unknown.
    """


def test_a_none_default_accepts_null_whatever_the_annotation():
    def f(limit: int = None, unit: Literal["c", "f"] = None, label: Annotated[str, "A label."] = None):
        return limit, unit, label

    props = function_spec(f)["parameters"]["properties"]
    assert props["limit"] == {"type": ["integer", "null"], "default": None}
    assert props["unit"] == {"type": ["string", "null"], "enum": ["c", "f", None], "default": None}
    assert props["label"] == {"type": ["string", "null"], "description": "A label.", "default": None}
    schema = function_spec(f)["parameters"]
    args = coerce_arguments(schema, '{"limit": null, "unit": null, "label": null}')  # the defaults sent back
    assert f(**call_kwargs(f, args)) == (None, None, None)


def test_google_docstring():
    spec = function_spec(google_style)
    assert spec["description"] == "Get the weather forecast.\n\nLooks the city up first, then\nasks the weather service."
    p = spec["parameters"]["properties"]
    assert p["city"]["description"] == 'Name of the city, for example "Oslo".'
    assert p["days"]["description"] == "How many days ahead to forecast. Default: 1."
    assert "Default" not in p
    assert p["units"]["description"] == '"metric" or "imperial".'


@pytest.mark.parametrize("header", ["Arguments:", "Parameters:"])
def test_google_section_aliases(header):
    def f(x: int):
        pass

    f.__doc__ = f"Summary.\n\n{header}\n    x: The x.\n"
    spec = function_spec(f)
    assert spec["description"] == "Summary."
    assert spec["parameters"]["properties"]["x"]["description"] == "The x."


def numpy_style(a: int, b: float, c: str = ""):
    """Combine values.

    Parameters
    ----------
    a : int
        The first value,
        over two lines.
    b, c : float
        Shared text.

    Returns
    -------
    float
        The result, which is not a parameter.
    """


def test_numpy_docstring():
    spec = function_spec(numpy_style)
    assert spec["description"] == "Combine values."
    p = spec["parameters"]["properties"]
    assert p["a"]["description"] == "The first value, over two lines."
    assert p["b"]["description"] == "Shared text."
    assert p["c"]["description"] == "Shared text."
    assert "float" not in {v.get("description") for v in p.values()}


def sphinx_style(path: str, mode: str = "r"):
    """Open a file.

    The body continues here.

    :param path: Where the file is,
        relative to the notebook.
    :type path: str
    :param str mode: How to open it.
    :returns: The file's text.
    :raises OSError: If it is missing.
    """


def test_sphinx_docstring():
    spec = function_spec(sphinx_style)
    assert spec["description"] == "Open a file.\n\nThe body continues here."
    p = spec["parameters"]["properties"]
    assert p["path"]["description"] == "Where the file is, relative to the notebook."
    assert p["mode"]["description"] == "How to open it."


def test_description_stops_at_returns_without_parameter_section():
    def f():
        """Summary.

        Returns:
            Nothing useful.
        """

    assert function_spec(f)["description"] == "Summary."


def test_annotated_description_wins_over_docstring():
    def f(x: Annotated[int, "From Annotated."]):
        """Summary.

        Args:
            x: From the docstring.
        """

    assert props(f)["x"]["description"] == "From Annotated."


def test_undocumented_parameter_has_no_description():
    def f(x: int, y: int):
        """Summary.

        Args:
            x: Documented.
        """

    p = props(f)
    assert p["x"]["description"] == "Documented."
    assert "description" not in p["y"]


# --------------------------------------------------------------------------- validate


SPEC_SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}


def test_validate_accepts_good_values():
    validate(SPEC_SCHEMA, {"a": 1, "b": "x"})
    validate({}, object())
    validate(True, None)
    validate({"type": "integer"}, 3.0)
    validate({"type": ["string", "null"]}, None)
    validate({"type": "number", "default": "ignored"}, 2)


def test_validate_message_lists_every_problem():
    with pytest.raises(ToolArgumentsError) as info:
        validate(SPEC_SCHEMA, {"a": "x"})
    assert str(info.value) == "Arguments do not fit the tool's schema: 'b' is required; 'a' must be integer, got string \"x\"."
    assert info.value.errors == ["'b' is required", "'a' must be integer, got string \"x\""]
    assert isinstance(info.value, ToolError)


@pytest.mark.parametrize(
    "schema, value, expected",
    [
        ({"type": "integer"}, True, "the arguments must be integer, got boolean true"),
        ({"type": "integer"}, 3.5, "the arguments must be integer, got number 3.5"),
        ({"type": "number"}, False, "the arguments must be number, got boolean false"),
        ({"type": "boolean"}, 1, "the arguments must be boolean, got integer 1"),
        ({"type": "string"}, None, "the arguments must be string, got null"),
        ({"type": ["integer", "null"]}, "1", 'the arguments must be integer or null, got string "1"'),
        ({"type": "object"}, [1], "the arguments must be object, got array"),
        ({"type": "array"}, {}, "the arguments must be array, got object"),
        ({"enum": ["c", "f"]}, "k", 'the arguments must be one of "c", "f", got string "k"'),
        ({"enum": [1, 2]}, True, "the arguments must be one of 1, 2, got boolean true"),
        ({"const": "on"}, "off", 'the arguments must be "on", got string "off"'),
        ({"minimum": 0}, -1, "the arguments must be at least 0, got -1"),
        ({"maximum": 10}, 11, "the arguments must be at most 10, got 11"),
        ({"exclusiveMinimum": 0}, 0, "the arguments must be greater than 0, got 0"),
        ({"exclusiveMaximum": 1.5}, 1.5, "the arguments must be less than 1.5, got 1.5"),
        ({"minimum": 0, "exclusiveMinimum": True}, 0, "the arguments must be greater than 0, got 0"),
        ({"maximum": 5, "exclusiveMaximum": True}, 5, "the arguments must be less than 5, got 5"),
        ({"minLength": 2}, "a", "the arguments must be at least 2 characters long, got 1"),
        ({"maxLength": 1}, "ab", "the arguments must be at most 1 character long, got 2"),
        ({"pattern": "^[a-z]+$"}, "A1", "the arguments must match the pattern '^[a-z]+$', got string \"A1\""),
        ({"minItems": 1}, [], "the arguments must have at least 1 item, got 0"),
        ({"maxItems": 2}, [1, 2, 3], "the arguments must have at most 2 items, got 3"),
        ({"uniqueItems": True}, [1, 2, 1], "the arguments must not contain duplicate items"),
        (False, 1, "the arguments is not allowed"),
    ],
)
def test_validate_single_problem(schema, value, expected):
    assert problems(schema, value) == [expected]


def test_json_equality_in_enum_const_and_unique_items():
    validate({"enum": [1]}, 1.0)
    validate({"const": {"a": [1, True]}}, {"a": [1.0, True]})
    validate({"uniqueItems": True}, [1, True, "1"])
    assert problems({"const": [1]}, [True]) == ["the arguments must be [1], got array"]


def test_validate_nested_paths():
    schema = {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}},
                    "required": ["name"],
                },
            },
            "meta": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    }
    validate(schema, {"items": [{"name": "a"}], "meta": {"n": 1}})
    assert problems(schema, {"items": [{"name": "a"}, {}, {"name": 5}], "meta": {"n": "1"}}) == [
        "'items[1].name' is required",
        "'items[2].name' must be string, got integer 5",
        "'meta.n' must be integer, got string \"1\"",
    ]


def test_additional_properties_false_names_the_allowed_ones():
    assert problems(SPEC_SCHEMA, {"a": 1, "b": "x", "c": 2}) == ["'c' is not allowed (allowed: 'a', 'b')"]


def test_prefix_items_and_old_tuple_items():
    schema = {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False}
    validate(schema, [1, "a"])
    assert problems(schema, ["a", "a", 3]) == [
        "'[0]' must be integer, got string \"a\"",
        "'[2]' is not allowed",
    ]
    assert problems({"items": [{"type": "string"}]}, [1]) == ["'[0]' must be string, got integer 1"]


def test_any_of_reports_expected_types_or_the_near_branch():
    schema = {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "string"}}]}
    validate(schema, 3)
    validate(schema, ["a"])
    assert problems(schema, True) == ["the arguments must be integer or array, got boolean true"]
    assert problems(schema, ["a", 2]) == ["'[1]' must be string, got integer 2"]


def test_any_of_with_several_near_branches():
    schema = {"anyOf": [{"type": "integer", "minimum": 10}, {"type": "integer", "maximum": 0}]}
    assert problems(schema, 5) == [
        "the arguments does not match any allowed form: (the arguments must be at least 10, got 5) "
        "or (the arguments must be at most 0, got 5)"
    ]


def test_one_of_and_all_of():
    one_of = {"oneOf": [{"type": "integer"}, {"type": "number"}]}
    validate(one_of, 2.5)
    assert problems(one_of, 2) == ["the arguments must match exactly one alternative, but matches 2"]
    assert problems(one_of, "x") == ['the arguments must be integer or number, got string "x"']
    all_of = {"allOf": [{"minimum": 1}, {"maximum": 3}, {"type": "integer"}]}
    validate(all_of, 2)
    assert problems(all_of, 4) == ["the arguments must be at most 3, got 4"]


def test_local_refs():
    schema = {
        "type": "object",
        "properties": {"p": {"$ref": "#/$defs/Point"}},
        "$defs": {"Point": {"type": "object", "required": ["x"]}},
    }
    assert problems(schema, {"p": {}}) == ["'p.x' is required"]
    with pytest.raises(ToolError, match="only references inside the schema"):
        validate({"$ref": "http://example.com/s.json"}, 1)


def test_duplicate_problems_are_reported_once():
    schema = {"allOf": [{"type": "string"}, {"type": "string"}]}
    assert problems(schema, 1) == ["the arguments must be string, got integer 1"]


def test_long_values_are_shortened_in_messages():
    [message] = problems({"type": "integer"}, "x" * 100)
    assert message.startswith('the arguments must be integer, got string "xxx')
    assert message.endswith("...") and len(message) < 90


def test_generated_schemas_validate_their_own_values():
    def f(
        a: int,
        b: Optional[str],
        c: list[dict[str, int]],
        d: Literal["x", "y"],
        e: Union[int, list[str]],
        g: Color,
        m: Movie,
        p: Optional[Point] = None,
        t: tuple[int, str] = (1, "a"),
    ):
        pass

    schema = function_spec(f)["parameters"]
    good = {
        "a": 1,
        "b": None,
        "c": [{"k": 1}],
        "d": "x",
        "e": ["s"],
        "g": "red",
        "m": {"title": "T"},
        "p": {"x": 1, "tags": ["a"]},
        "t": [2, "b"],
    }
    validate(schema, good)
    bad = {**good, "a": True, "d": "z", "g": "blue", "m": {"year": 1}, "p": {"x": "1"}, "t": [1]}
    assert problems(schema, bad) == [
        "'a' must be integer, got boolean true",
        "'d' must be one of \"x\", \"y\", got string \"z\"",
        "'g' must be one of \"red\", \"green\", got string \"blue\"",
        "'m.title' is required",
        "'p.x' must be number, got string \"1\"",
        "'t' must have at least 2 items, got 1",
    ]


# --------------------------------------------------------------------------- coerce_arguments


def test_coerce_parses_json_text_and_dicts():
    assert coerce_arguments(SPEC_SCHEMA, '{"a": 1, "b": "x"}') == {"a": 1, "b": "x"}
    assert coerce_arguments(SPEC_SCHEMA, b'{"a": 1, "b": "x"}') == {"a": 1, "b": "x"}
    assert coerce_arguments(SPEC_SCHEMA, {"a": 1, "b": "x"}) == {"a": 1, "b": "x"}


@pytest.mark.parametrize("empty", [None, "", "  \n"])
def test_coerce_empty_arguments(empty):
    schema = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
    assert coerce_arguments(schema, empty) == {}


def test_coerce_empty_arguments_still_validated():
    with pytest.raises(ToolArgumentsError, match=r"'a' is required; 'b' is required\.$"):
        coerce_arguments(SPEC_SCHEMA, None)


def test_coerce_double_encoded_json():
    assert coerce_arguments(SPEC_SCHEMA, '"{\\"a\\": 1, \\"b\\": \\"x\\"}"') == {"a": 1, "b": "x"}


def test_coerce_invalid_json():
    with pytest.raises(ToolArgumentsError) as info:
        coerce_arguments(SPEC_SCHEMA, '{"a": 1,')
    message = str(info.value)
    assert message.startswith("Arguments are invalid: the arguments are not valid JSON (")
    assert message.endswith(': {"a": 1,.')
    assert len(info.value.errors) == 1


def test_coerce_rejects_nan():
    with pytest.raises(ToolArgumentsError, match="NaN is not valid JSON"):
        coerce_arguments({}, '{"a": NaN}')


@pytest.mark.parametrize(
    "arguments, got",
    [("[1, 2]", "array"), ('"text"', 'string "text"'), ("3", "integer 3"), ([1], "array")],
)
def test_coerce_rejects_non_objects(arguments, got):
    with pytest.raises(ToolArgumentsError) as info:
        coerce_arguments({}, arguments)
    assert str(info.value) == f"Arguments are invalid: the arguments must be a JSON object, got {got}."


def test_coerce_validates():
    with pytest.raises(ToolArgumentsError) as info:
        coerce_arguments(SPEC_SCHEMA, '{"a": "x", "b": "y"}')
    assert info.value.errors == ["'a' must be integer, got string \"x\""]


# --------------------------------------------------------------------------- call_kwargs


def test_call_kwargs_converts_where_annotations_ask():
    def f(
        pair: tuple[int, str],
        nums: tuple[int, ...],
        tags: set[str],
        frozen: frozenset[int],
        color: Color,
        maybe: Optional[Color],
        point: Point,
        shapes: list[Shape],
        by_name: dict[str, Level],
        ratio: float,
        count: int,
        movie: Movie,
        either: Union[Point, str],
        raw,
        text: str,
    ):
        pass

    kwargs = call_kwargs(
        f,
        {
            "pair": [1, "a"],
            "nums": [1, 2],
            "tags": ["a", "b", "a"],
            "frozen": [1],
            "color": "green",
            "maybe": None,
            "point": {"x": 1, "tags": ["t"]},
            "shapes": [{"color": "red", "corners": [{"x": 0.5}]}],
            "by_name": {"a": 2},
            "ratio": 1,
            "count": 3.0,
            "movie": {"title": "T", "year": 1999},
            "either": {"x": 2},
            "raw": [1, 2],
            "text": "s",
        },
    )
    assert kwargs["pair"] == (1, "a")
    assert kwargs["nums"] == (1, 2)
    assert kwargs["tags"] == {"a", "b"}
    assert kwargs["frozen"] == frozenset({1}) and isinstance(kwargs["frozen"], frozenset)
    assert kwargs["color"] is Color.GREEN
    assert kwargs["maybe"] is None
    assert kwargs["point"] == Point(x=1, tags=["t"])
    assert kwargs["shapes"] == [Shape(color=Color.RED, corners=(Point(x=0.5),))]
    assert kwargs["by_name"] == {"a": Level.HIGH} and kwargs["by_name"]["a"] is Level.HIGH
    assert kwargs["ratio"] == 1.0 and type(kwargs["ratio"]) is float
    assert kwargs["count"] == 3 and type(kwargs["count"]) is int
    assert kwargs["movie"] == {"title": "T", "year": 1999}
    assert kwargs["either"] == Point(x=2)
    assert kwargs["raw"] == [1, 2]
    assert kwargs["text"] == "s"


def test_call_kwargs_round_trip_through_spec():
    def plot(points: list[Point], color: Color = Color.RED) -> str:
        """Plot points."""
        return f"{len(points)} {color.value} points at x={points[0].x}"

    spec = function_spec(plot)
    args = coerce_arguments(spec["parameters"], '{"points": [{"x": 1}], "color": "green"}')
    assert plot(**call_kwargs(plot, args)) == "1 green points at x=1.0"


def test_call_kwargs_on_bound_method():
    class Box:
        def put(self, item: Color) -> Color:
            return item

    box = Box()
    assert box.put(**call_kwargs(box.put, {"item": "red"})) is Color.RED


# --------------------------------------------------------------------------- module


def test_module_docstring_example_runs():
    result = doctest.testmod(toolschema)
    assert result.attempted > 0 and result.failed == 0


def test_public_api():
    assert sorted(toolschema.__all__) == ["call_kwargs", "coerce_arguments", "function_spec", "validate"]


def test_call_kwargs_names_an_argument_that_cannot_be_converted():
    @dataclasses.dataclass
    class Span:
        start: int
        end: int

        def __post_init__(self):
            if self.end < self.start:
                raise ValueError("end comes before start")

    def f(span: Span):
        pass

    with pytest.raises(ToolArgumentsError) as info:
        call_kwargs(f, {"span": {"start": 5, "end": 1}})
    assert str(info.value) == "Arguments cannot be converted: 'span': Value error, end comes before start."


def test_pydantic_field_constraints_reach_the_schema_and_the_messages():
    from pydantic import Field

    def f(count: Annotated[int, Field(ge=1, description="How many.")], name: Annotated[str, Field(max_length=3)] = "a"):
        pass

    schema = function_spec(f)["parameters"]
    assert schema["properties"] == {
        "count": {"type": "integer", "minimum": 1, "description": "How many."},
        "name": {"type": "string", "maxLength": 3, "default": "a"},
    }
    with pytest.raises(ToolArgumentsError) as info:
        coerce_arguments(schema, '{"count": 0, "name": "long"}')
    assert info.value.errors == ["'count' must be at least 1, got 0", "'name' must be at most 3 characters long, got 4"]


def test_importing_aihub_nb_and_its_tools_loads_no_schema_library():
    code = (
        "import json, sys; import aihub_nb, aihub_nb.toolschema, aihub_nb.tools; "
        "print(json.dumps([m for m in ('pydantic', 'jsonschema', 'docstring_parser') if m in sys.modules]))"
    )
    root = str(Path(toolschema.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
