"""Function and tool schemas as OpenAI renders them into the prompt.

OpenAI does not publish the rendering, but the community reverse-engineering (openai-chat-tokens,
jtokkit, litellm) agrees that the schemas become a TypeScript ``namespace functions`` block; with
the overheads in ``counting`` this reproduces the prompt counts OpenAI's cookbook reports for
tool requests (105 tokens with cl100k_base, 101 with o200k_base).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tokenwindow.errors import InvalidInputError


def _type_of(schema: Mapping[str, Any], indent: int) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(_type_of({**schema, "type": k}, indent) for k in kind)
    if "enum" in schema and isinstance(schema["enum"], list):
        return " | ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in schema["enum"])
    if kind == "string":
        return "string"
    if kind in ("number", "integer"):
        return "number"
    if kind in ("boolean", "null"):
        return str(kind)
    if kind == "array":
        items = schema.get("items")
        return f"{_type_of(items, indent)}[]" if isinstance(items, Mapping) else "any[]"
    if kind == "object" and isinstance(schema.get("properties"), Mapping):
        return "{\n" + _properties(schema, indent + 2) + "\n" + " " * indent + "}"
    return "any"


def _properties(schema: Mapping[str, Any], indent: int) -> str:
    required = schema.get("required") or ()
    lines = []
    for name, value in schema["properties"].items():
        prop = value if isinstance(value, Mapping) else {}
        if prop.get("description"):
            lines.append(f"// {prop['description']}")
        optional = "" if name in required else "?"
        lines.append(f"{name}{optional}: {_type_of(prop, indent)},")
    return "\n".join(" " * indent + line for line in lines)


def _function_of(tool: object, where: str) -> Mapping[str, Any]:
    if not isinstance(tool, Mapping):
        raise InvalidInputError(f"{where}: must be an object, got {type(tool).__name__}")
    if "function" in tool:
        function = tool["function"]
        where = f"{where}.function"
    else:  # the legacy ``functions=`` shape: the definition itself
        function = tool
    if not isinstance(function, Mapping):
        raise InvalidInputError(f"{where}: must be an object")
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"{where}.name: must be a non-empty string")
    parameters = function.get("parameters", {})
    if not isinstance(parameters, Mapping):
        raise InvalidInputError(f"{where}.parameters: must be a JSON schema object")
    if not isinstance(parameters.get("properties", {}), Mapping):
        raise InvalidInputError(f"{where}.parameters.properties: must be an object")
    return function


def render_tools(tools: object) -> str:
    """The ``namespace functions`` text for a request's ``tools`` (or legacy ``functions``)."""
    if not isinstance(tools, list):
        raise InvalidInputError(f"tools: must be a list, got {type(tools).__name__}")
    lines = ["namespace functions {", ""]
    for i, tool in enumerate(tools):
        function = _function_of(tool, f"tools[{i}]")
        if function.get("description"):
            lines.append(f"// {function['description']}")
        parameters = function.get("parameters") or {}
        if parameters.get("properties"):
            lines.append(f"type {function['name']} = (_: {{")
            lines.append(_properties(parameters, 0))
            lines.append("}) => any;")
        else:
            lines.append(f"type {function['name']} = () => any;")
        lines.append("")
    lines.append("} // namespace functions")
    return "\n".join(lines)
