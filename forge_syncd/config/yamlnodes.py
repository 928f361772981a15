"""YAML parsing that keeps line numbers: every mapping and list remembers where each of its
entries was written, so validation errors can name the line."""

from __future__ import annotations

from typing import Any

import yaml


class LineDict(dict[str, Any]):
    """A mapping that knows its own line and the line of each key and each value."""

    line: int
    key_lines: dict[str, int]
    value_lines: dict[str, int]


class LineList(list[Any]):
    """A list that knows its own line and the line of each item."""

    line: int
    item_lines: list[int]


class YamlError(Exception):
    def __init__(self, line: int, message: str, key_path: str = "(file)") -> None:
        super().__init__(message)
        self.line = line
        self.message = message
        self.key_path = key_path


def parse(text: str) -> Any:
    """Given YAML text, return plain values with LineDict/LineList containers.

    Raise YamlError (with a 1-based line) for syntax errors, duplicate keys, non-string keys
    and YAML features a config has no use for (tags other than the standard ones, aliases).
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise YamlError(line, f"invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise YamlError(1, f"invalid YAML: {exc}") from None
    except RecursionError:
        # PyYAML's composer recurses once per nesting level: thousands of `[` exhaust it.
        raise YamlError(1, "nested too deeply") from None
    if node is None:
        return None
    if _expanded_size(node, MAX_VALUES) > MAX_VALUES:
        raise YamlError(1, f"more than {MAX_VALUES} values once aliases are expanded")
    return _convert(node, yaml.SafeLoader(""), 0, "")


MAX_VALUES = 100_000


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Given a composed document, return how many nodes it has with every alias expanded,
    counting no further than just past `limit` (aliases can make a small file exponential)."""
    count, stack = 0, [root]
    while stack and count <= limit:
        node = stack.pop()
        count += 1
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack += [key, value]
    return count


def _convert(node: yaml.Node, loader: yaml.SafeLoader, depth: int, path: str) -> Any:
    line = node.start_mark.line + 1
    if depth > 50:
        raise YamlError(line, "nested too deeply", path or "(file)")
    if isinstance(node, yaml.MappingNode):
        return _mapping(node, loader, depth, path)
    if isinstance(node, yaml.SequenceNode):
        items = LineList(
            _convert(item, loader, depth + 1, f"{path}[{index}]")
            for index, item in enumerate(node.value)
        )
        items.line = line
        items.item_lines = [item.start_mark.line + 1 for item in node.value]
        return items
    try:
        return loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError) as exc:
        # ValueError: an integer of more than 4300 digits (Python's int conversion limit).
        raise YamlError(line, f"invalid value: {exc}", path or "(file)") from None


def _mapping(node: yaml.MappingNode, loader: yaml.SafeLoader, depth: int, path: str) -> LineDict:
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines, result.value_lines = {}, {}
    for key_node, value_node in node.value:
        key_line = key_node.start_mark.line + 1
        where = path or "(file)"
        if key_node.tag == "tag:yaml.org,2002:merge":
            raise YamlError(key_line, "YAML merge keys (<<) are not supported here", where)
        key = _convert(key_node, loader, depth + 1, path)
        if not isinstance(key, str):
            raise YamlError(key_line, f"keys must be strings, not {key!r}", where)
        key_path = f"{path}.{key}" if path else key
        if key in result:
            raise YamlError(
                key_line, f"duplicate key (first at line {result.key_lines[key]})", key_path
            )
        result[key] = _convert(value_node, loader, depth + 1, key_path)
        result.key_lines[key] = key_line
        result.value_lines[key] = value_node.start_mark.line + 1
    return result
