"""JSON merge patches (RFC 7386), JSON patches (RFC 6902) and label/field selectors, with
kube-apiserver's rules and error wording."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from llmops.testing.kubernetes.api_errors import ApiStatusError, bad_request

# -------------------------------------------------------------------------------------
# RFC 7386
# -------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with ``patch`` merged in (both left unchanged)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -------------------------------------------------------------------------------------
# RFC 6902
# -------------------------------------------------------------------------------------


class JsonPatchError(ValueError):
    """An operation that does not apply (kube-apiserver answers 422)."""


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 1 and true differ, 1 and 1.0 do not."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise JsonPatchError("operation missing path field")
    if path == "":
        return []
    if not path.startswith("/"):
        raise JsonPatchError(f'invalid JSON pointer: "{path}"')
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _index(container: list[Any], part: str, *, adding: bool, path: str) -> int:
    if adding and part == "-":
        return len(container)
    if not re.fullmatch(r"0|[1-9][0-9]*", part):
        raise JsonPatchError(f'Unable to access invalid index: {part}: "{path}"')
    index = int(part)
    limit = len(container) if adding else len(container) - 1
    if index > limit:
        raise JsonPatchError(f'Unable to access invalid index: {index}: "{path}"')
    return index


def _parent(doc: Any, tokens: list[str], path: str, op: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif (
            isinstance(node, list)
            and re.fullmatch(r"0|[1-9][0-9]*", token)
            and int(token) < len(node)
        ):
            node = node[int(token)]
        else:
            raise JsonPatchError(f'{op} operation does not apply: doc is missing path: "{path}"')
    return node


def _get(doc: Any, path: str, op: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path, op)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if (
        isinstance(parent, list)
        and re.fullmatch(r"0|[1-9][0-9]*", last)
        and int(last) < len(parent)
    ):
        return parent[int(last)]
    raise JsonPatchError(f'{op} operation does not apply: doc is missing path: "{path}"')


def _remove(doc: Any, path: str, op: str = "remove") -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise JsonPatchError(f"{op} operation does not apply: cannot remove the whole document")
    parent = _parent(doc, tokens, path, op)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise JsonPatchError(f'{op} operation does not apply: doc is missing key: "{path}"')
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, adding=False, path=path))
    raise JsonPatchError(f'{op} operation does not apply: doc is missing path: "{path}"')


def _add(doc: Any, path: str, value: Any, op: str = "add") -> Any:
    tokens = _pointer(path)
    if not tokens:
        return copy.deepcopy(value)
    parent = _parent(doc, tokens, path, op)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, adding=True, path=path), copy.deepcopy(value))
    else:
        raise JsonPatchError(f'{op} operation does not apply: doc is missing path: "{path}"')
    return doc


def json_patch(document: Any, operations: Any) -> Any:
    """``document`` (left unchanged) with ``operations`` applied.

    :raises ApiStatusError: 400 when ``operations`` is not a list of objects.
    :raises JsonPatchError: when an operation does not apply (a failed ``test`` included).
    """
    if not isinstance(operations, list) or not all(isinstance(o, dict) for o in operations):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(document)
    for operation in operations:
        op = operation.get("op")
        path = operation.get("path")
        if op == "add":
            if "value" not in operation:
                raise JsonPatchError("add operation does not apply: missing value")
            doc = _add(doc, path, operation["value"])
        elif op == "remove":
            _remove(doc, path)
        elif op == "replace":
            if "value" not in operation:
                raise JsonPatchError("replace operation does not apply: missing value")
            tokens = _pointer(path)
            if not tokens:
                doc = copy.deepcopy(operation["value"])
                continue
            _get(doc, path, "replace")
            parent = _parent(doc, tokens, path, "replace")
            if isinstance(parent, list):
                parent[_index(parent, tokens[-1], adding=False, path=path)] = copy.deepcopy(
                    operation["value"]
                )
            else:
                parent[tokens[-1]] = copy.deepcopy(operation["value"])
        elif op in ("move", "copy"):
            source = operation.get("from")
            if not isinstance(source, str):
                raise JsonPatchError(f"{op} operation does not apply: missing from field")
            if op == "move":
                if path != source and str(path).startswith(source + "/"):
                    raise JsonPatchError("move operation does not apply: from is a prefix of path")
                value = _remove(doc, source, "move")
            else:
                value = copy.deepcopy(_get(doc, source, "copy"))
            doc = _add(doc, path, value, op)
        elif op == "test":
            if "value" not in operation:
                raise JsonPatchError("test operation does not apply: missing value")
            try:
                current = _get(doc, path, "test")
            except JsonPatchError:
                current = None
                if operation["value"] is not None:
                    raise JsonPatchError(f"testing value {path} failed: test failed") from None
            if not _same(current, operation["value"]):
                raise JsonPatchError(f"testing value {path} failed: test failed")
        else:
            raise JsonPatchError(f"Unexpected kind: {op}")
    return doc


# -------------------------------------------------------------------------------------
# Selectors
# -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # =, !=, in, notin, exists, !, gt, lt
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "=":
            return present and value == self.values[0]
        if self.operator == "!=":
            return not present or value != self.values[0]
        if self.operator == "in":
            return present and value in self.values
        if self.operator == "notin":
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if not present or value is None:
            return False
        try:
            number = int(value)
        except ValueError:
            return False
        limit = int(self.values[0])
        return number > limit if self.operator == "gt" else number < limit


_TOKEN = re.compile(r"\s*(\(|\)|,|==|!=|=|!|[^\s(),=!<>]+|<|>)")
_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
)
_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def _selector_error(message: str) -> ApiStatusError:
    return bad_request(f"unable to parse requirement: {message}")


def parse_label_selector(text: str) -> list[Requirement]:
    """kube-apiserver's label selector grammar: ``a=b``, ``a==b``, ``a!=b``,
    ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``, ``a>1``, ``a<1``, comma-separated.

    :raises ApiStatusError: 400 for a selector that does not parse.
    """
    tokens: list[str] = []
    position = 0
    text = text.strip()
    while position < len(text):
        found = _TOKEN.match(text, position)
        if found is None:
            raise _selector_error(f"found '{text[position:]}', expected: identifier")
        tokens.append(found.group(1))
        position = found.end()
    requirements: list[Requirement] = []
    index = 0

    def take() -> str | None:
        nonlocal index
        if index >= len(tokens):
            return None
        index += 1
        return tokens[index - 1]

    def peek() -> str | None:
        return tokens[index] if index < len(tokens) else None

    def key_of(token: str | None) -> str:
        if token is None or token in ("(", ")", ",", "=", "==", "!=", "!", "<", ">"):
            raise _selector_error(f"found '{token or 'end of string'}', expected: identifier")
        if len(token) > 316 or not _KEY.fullmatch(token):
            raise _selector_error(
                f'key: Invalid value: "{token}": name part must consist of alphanumeric '
                "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                "character"
            )
        return token

    def value_of(token: str | None) -> str:
        if token is None or token in ("(", ")", ",", "=", "==", "!=", "!", "<", ">"):
            raise _selector_error(f"found '{token or 'end of string'}', expected: identifier")
        if len(token) > 63 or not _VALUE.fullmatch(token):
            raise _selector_error(
                f'values[0][{token}]: Invalid value: "{token}": a valid label must be an empty '
                "string or consist of alphanumeric characters, '-', '_' or '.', and must start "
                "and end with an alphanumeric character"
            )
        return token

    while index < len(tokens):
        word = take()
        if word == "!":
            requirements.append(Requirement(key_of(take()), "!"))
        else:
            key = key_of(word)
            following = peek()
            if following is None or following == ",":
                requirements.append(Requirement(key, "exists"))
            elif following in ("=", "=="):
                take()
                following = peek()
                value = "" if following in (None, ",") else value_of(take())
                requirements.append(Requirement(key, "=", (value,)))
            elif following == "!=":
                take()
                following = peek()
                value = "" if following in (None, ",") else value_of(take())
                requirements.append(Requirement(key, "!=", (value,)))
            elif following in ("in", "notin"):
                operator = str(take())
                if take() != "(":
                    raise _selector_error("found '" + str(tokens[index - 1]) + "', expected: '('")
                values: list[str] = []
                while True:
                    item = take()
                    if item == ")" and not values:
                        values.append("")  # "()" is the set holding the empty value
                        break
                    if item in (",", ")"):
                        values.append("")
                    else:
                        values.append(value_of(item))
                        item = take()
                    if item == ")":
                        break
                    if item != ",":
                        raise _selector_error(
                            f"found '{item or 'end of string'}', expected: ',' or ')'"
                        )
                requirements.append(Requirement(key, operator, tuple(values)))
            elif following in ("<", ">"):
                take()
                number = take()
                if number is None or not re.fullmatch(r"-?\d+", number):
                    raise _selector_error(
                        f"for 'Gt', 'Lt' operators, the value must be an integer: {number}"
                    )
                requirements.append(Requirement(key, "gt" if following == ">" else "lt", (number,)))
            else:
                raise _selector_error(
                    f"found '{following}', expected: in, notin, =, ==, !=, gt, lt"
                )
        after = take()
        if after is not None and after != ",":
            raise _selector_error(f"found '{after}', expected: ',' or 'end of string'")
        if after == "," and index >= len(tokens):
            raise _selector_error("found 'end of string', expected: identifier")
    return requirements


def label_matcher(text: str | None) -> Callable[[Mapping[str, str]], bool]:
    requirements = parse_label_selector(text) if text else []
    return lambda labels: all(r.matches(labels) for r in requirements)


_FIELDS = ("metadata.name", "metadata.namespace")


def field_matcher(text: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """kube-apiserver's field selectors on custom resources: ``metadata.name`` and
    ``metadata.namespace`` with ``=``, ``==`` or ``!=``.

    :raises ApiStatusError: 400 for another field or a malformed term.
    """
    terms: list[tuple[str, bool, str]] = []
    for raw in (text or "").split(","):
        term = raw.strip()
        if not term:
            continue
        found = re.fullmatch(r"([^=!]+)(==|=|!=)(.*)", term)
        if found is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        field, operator, value = found.group(1).strip(), found.group(2), found.group(3).strip()
        if field not in _FIELDS:
            raise bad_request(f"field label not supported: {field}")
        terms.append((field, operator != "!=", value))

    def matches(obj: Mapping[str, Any]) -> bool:
        metadata = obj.get("metadata") or {}
        for field, equal, value in terms:
            actual = metadata.get(field.split(".", 1)[1], "")
            if (actual == value) != equal:
                return False
        return True

    return matches
