"""The registered tools described in each provider's tool format, ready to send.

Every dialect is built from `Tool.input_schema()`, the same model that validates the
arguments, so the model is told exactly what will be enforced. OpenAI's strict mode is
switched on only where the schema allows it (every property required, no extra members,
only the keywords strict mode accepts); elsewhere the schema goes as is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from dar.effects import Effect
from dar.errors import ConfigurationError
from dar.tools import Tool

#: Keywords OpenAI's strict mode (Structured Outputs) accepts in a schema.
STRICT_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "enum", "const",
        "anyOf", "$ref", "$defs", "description", "pattern", "format", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems",
    }
)  # fmt: skip


def strict_allowed(node: Any) -> bool:
    """Whether a JSON Schema fits OpenAI's strict mode as it stands."""
    if isinstance(node, list):
        return all(strict_allowed(n) for n in node)
    if not isinstance(node, dict):
        return True
    if not set(node) <= STRICT_KEYWORDS:
        return False
    props = node.get("properties")
    if node.get("type") == "object" or props is not None:
        if node.get("additionalProperties") is not False:
            return False
        if set(node.get("required", ())) != set(props or {}):
            return False
    children: list[Any] = list((props or {}).values())
    for name in ("items", "anyOf", "$defs"):
        child = node.get(name)
        children.extend(child.values() if isinstance(child, dict) and name == "$defs" else [child])
    return all(strict_allowed(c) for c in children if c is not None)


def _parameters(tool: Tool[Any]) -> dict[str, Any]:
    schema = tool.input_schema()
    schema.pop("description", None)  # the tool's description goes beside it
    return schema


def openai_chat(tool: Tool[Any]) -> dict[str, Any]:
    params = _parameters(tool)
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.summary,
            "parameters": params,
            "strict": strict_allowed(params),
        },
    }


def openai_responses(tool: Tool[Any]) -> dict[str, Any]:
    params = _parameters(tool)
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.summary,
        "parameters": params,
        "strict": strict_allowed(params),
    }


def anthropic(tool: Tool[Any]) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.summary, "input_schema": _parameters(tool)}


def gemini(tool: Tool[Any]) -> dict[str, Any]:
    return {
        "name": tool.name,
        "description": tool.summary,
        "parameters_json_schema": _parameters(tool),
    }


def mcp_annotations(effect: Effect) -> dict[str, bool]:
    """MCP's tool hints, from the effect `dar` enforces (so they are not just hints)."""
    return {
        "readOnlyHint": effect is Effect.READ,
        "destructiveHint": effect is Effect.IRREVERSIBLE,
        "idempotentHint": True,  # reads by nature; everything else by the runtime
        "openWorldHint": effect in (Effect.MUTATE_EXTERNAL, Effect.IRREVERSIBLE),
    }


def mcp(tool: Tool[Any]) -> dict[str, Any]:
    return {
        "name": tool.name,
        "description": tool.summary,
        "inputSchema": _parameters(tool),
        "annotations": mcp_annotations(tool.effect),
    }


DIALECTS: dict[str, Callable[[Tool[Any]], dict[str, Any]]] = {
    "openai-chat": openai_chat,
    "openai-responses": openai_responses,
    "anthropic": anthropic,
    "gemini": gemini,
    "mcp": mcp,
}


def tool_schemas(tools: Iterable[Tool[Any]], dialect: str) -> list[dict[str, Any]]:
    """``tools`` in ``dialect``'s format: the list to pass as the API's ``tools``. Gemini's
    is one ``Tool`` holding every function declaration."""
    build = DIALECTS.get(dialect)
    if build is None:
        raise ConfigurationError(
            f"unknown tool dialect {dialect!r}; use one of: {', '.join(DIALECTS)}"
        )
    described = [build(t) for t in tools]
    if dialect == "gemini":
        return [{"function_declarations": described}]
    return described
