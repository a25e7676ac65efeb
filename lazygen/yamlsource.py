"""Reading a user's yaml file into plain values that remember where they
came from (line and column), with every failure turned into a diagnostic.

Only plain YAML is accepted: maps, lists and scalars with the standard tags.
A tag that would construct an object is an error, and a document whose
aliases expand into too many nodes (an "alias bomb") is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Union

import yaml

from lazygen.errors import UserError
from lazygen.inputs import read_text

try:
    _Loader = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader  # type: ignore[misc]

# Far more nodes than any backend yaml has, far fewer than an alias bomb expands to.
MAX_NODES = 200_000
# Far deeper than any backend yaml nests; libyaml's composer recurses in C
# (tens of thousands of levels crash the process) and so does our converter.
MAX_DEPTH = 100

_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}


class Located(NamedTuple):
    """A value and its 1-based position in the file."""

    value: Union[str, int, float, bool, None, list, dict]
    line: int
    col: int


def load(path: Path, text: str | None = None) -> Located:
    """Parse one YAML document into Located values (dict keys are plain strings)."""
    if text is None:
        text = read_text(path)
    if not text.strip():
        raise UserError.at(str(path), 1, 1, "file is empty", "a backend yaml needs at least 'backend:' and 'cpp_namespace:'")
    try:
        _check_size(path, text)
        node = yaml.compose(text, Loader=_Loader)
    except yaml.reader.ReaderError as err:
        # A character YAML refuses (a NUL, say): its position is an index into the text.
        line = text.count("\n", 0, err.position) + 1
        col = err.position - (text.rfind("\n", 0, err.position) + 1) + 1
        raise UserError.at(str(path), line, col, f"invalid YAML: character {err.character!r} is not allowed in YAML") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or "invalid YAML"
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise UserError.at(str(path), line, col, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as err:
        raise UserError.at(str(path), None, None, f"invalid YAML: {err}") from None
    if node is None:
        raise UserError.at(str(path), 1, 1, "file holds no YAML document")
    return _Converter(path).convert(node)


def _check_size(path: Path, text: str) -> None:
    """Refuse deep nesting and too many nodes before composing: the event
    parser does not recurse and holds no node graph."""
    depth = 0
    nodes = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            nodes += 1
            if nodes > MAX_NODES:
                mark = event.start_mark
                raise UserError.at(str(path), mark.line + 1, mark.column + 1,
                                   f"the document has more than {MAX_NODES} YAML nodes, far more than a backend yaml has")
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise UserError.at(str(path), mark.line + 1, mark.column + 1, f"YAML nested more than {MAX_DEPTH} levels deep")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


class _Converter:
    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.count = 0
        self.constructor = yaml.SafeLoader("")  # only used to construct standard scalars

    def error(self, node: yaml.Node, message: str) -> UserError:
        return UserError.at(self.path, node.start_mark.line + 1, node.start_mark.column + 1, message)

    def convert(self, node: yaml.Node, depth: int = 1) -> Located:
        self.count += 1
        if self.count > MAX_NODES:
            # The text has fewer (_check_size): aliases expand it.
            raise self.error(node, f"the document's YAML aliases expand it to more than {MAX_NODES} nodes")
        # Aliases can nest deeper than the text does, or refer to themselves.
        if depth > MAX_DEPTH:
            raise self.error(node, f"YAML nested more than {MAX_DEPTH} levels deep (recursive YAML alias?)")
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        if isinstance(node, yaml.MappingNode):
            if node.tag != "tag:yaml.org,2002:map":
                raise self.error(node, f"YAML tag '{node.tag}' is not allowed here")
            out: dict[str, tuple[Located, Located]] = {}
            for key_node, value_node in node.value:
                key = self.convert(key_node, depth + 1)
                if not isinstance(key.value, str):
                    raise self.error(key_node, f"mapping key {key.value!r} is not a string")
                if key.value in out:
                    raise self.error(key_node, f"duplicate key '{key.value}'")
                out[key.value] = (key, self.convert(value_node, depth + 1))
            return Located(out, line, col)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                raise self.error(node, f"YAML tag '{node.tag}' is not allowed here")
            return Located([self.convert(n, depth + 1) for n in node.value], line, col)
        if node.tag not in _SCALAR_TAGS:
            raise self.error(node, f"YAML tag '{node.tag}' is not allowed here")
        try:
            value = self.constructor.construct_object(node)
        except Exception:  # noqa: BLE001 - an explicit tag (`!!int x`, `!!bool ''`) fails in PyYAML's constructors in many ways
            kind = node.tag.rsplit(":", 1)[-1]
            raise self.error(node, f"'{node.value}' is not a valid {kind} (YAML tag '!!{kind}')") from None
        return Located(value, line, col)
