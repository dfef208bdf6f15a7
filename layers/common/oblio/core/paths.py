"""Attribute paths: how a data map names a value inside an item's maps and lists.

`address.street` is the member `street` of the map `address`; `annexes[].s3_key` is the member
`s3_key` of every element of the list `annexes`; `tags[]` is every element of `tags`. A plain
name is a top-level attribute, as before paths existed.

A *pattern* is a parsed path (`ALL` stands for "every element"); a *location* is one concrete
place in one item: the top-level name alone (a str), or a tuple of names and list indexes. The
store writes a location as a document path (`#a.#b`, `#a[2].#c`), so that a rule on a path
rewrites only that path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

#: "every element of a list" in a pattern
ALL = "[]"

Pattern = tuple[str, ...]
Location = str | tuple[str | int, ...]

_SEGMENT = re.compile(r"^(?P<name>[^.\[\]]+)(?P<all>(\[\])*)$")


class PathError(ValueError):
    """A path the data map cannot use; the message says why (never a value)."""


def parse(text: str) -> Pattern:
    """`a.b[].c` -> ("a", "b", ALL, "c"). Raises PathError naming what is wrong."""
    if not isinstance(text, str) or not text:
        raise PathError("a path must be a non-empty string, e.g. 'address.street'")
    out: list[str] = []
    for seg in text.split("."):
        m = _SEGMENT.match(seg)
        if m is None:
            raise PathError(f"'{text}' is not a path: each part is a name, optionally "
                            "followed by [] (every element of a list), parts joined by dots, "
                            "e.g. 'address.street' or 'annexes[].s3_key'")
        out.append(m["name"])
        out.extend([ALL] * (len(m["all"]) // 2))
    return tuple(out)


def text(pattern: Pattern) -> str:
    """The path as the data map writes it."""
    out = ""
    for seg in pattern:
        if seg == ALL:
            out += "[]"
        else:
            out += ("." if out else "") + seg
    return out


def top(path: str) -> str:
    """The top-level attribute a path starts from."""
    return parse(path)[0]


def nested(path: str) -> bool:
    return len(parse(path)) > 1


def values(item: Mapping[str, Any], pattern: Pattern | str) -> list[tuple[Location, Any]]:
    """Every (location, value) the pattern reaches in the item; nothing where the item does
    not have the shape the path describes."""
    pat = parse(pattern) if isinstance(pattern, str) else pattern
    if not pat or pat[0] not in item:
        return []
    out: list[tuple[Location, Any]] = []

    def walk(value: Any, rest: Pattern, where: tuple[str | int, ...]) -> None:
        if not rest:
            out.append((_location(where), value))
            return
        head = rest[0]
        if head == ALL:
            if isinstance(value, list):
                for i, v in enumerate(value):
                    walk(v, rest[1:], (*where, i))
        elif isinstance(value, dict) and head in value:
            walk(value[head], rest[1:], (*where, head))

    walk(item[pat[0]], pat[1:], (pat[0],))
    return out


def first(item: Mapping[str, Any], pattern: Pattern | str) -> Any:
    """The first value the pattern reaches, or None."""
    found = values(item, pattern)
    return found[0][1] if found else None


def leaves(value: Any) -> Iterator[Any]:
    """Every scalar inside a value (maps and lists opened, sets too)."""
    if isinstance(value, dict):
        for v in value.values():
            yield from leaves(v)
    elif isinstance(value, list | set | frozenset | tuple):
        for v in value:
            yield from leaves(v)
    else:
        yield value


def _location(parts: tuple[str | int, ...]) -> Location:
    """A top-level place as its name, a nested one as its tuple."""
    return parts[0] if len(parts) == 1 and isinstance(parts[0], str) else parts


def location_text(loc: Location) -> str:
    """A location as a path with its indexes (`annexes[1].s3_key`), for messages and tests."""
    if isinstance(loc, str):
        return loc
    out = ""
    for seg in loc:
        out += f"[{seg}]" if isinstance(seg, int) else ("." if out else "") + seg
    return out


class Tree:
    """The mapped patterns of one table, for walking an item: which pattern a place in the
    item matches, and whether any mapped pattern lies below it."""

    def __init__(self, patterns: list[Pattern]) -> None:
        self.exact = set(patterns)
        self.prefixes = {p[:i] for p in patterns for i in range(1, len(p))}

    def mapped(self, pattern: Pattern) -> bool:
        return pattern in self.exact

    def has_below(self, pattern: Pattern) -> bool:
        return pattern in self.prefixes

    def walk(self, name: str, value: Any) -> Iterator[tuple[Pattern, Location, Any]]:
        """Each place of the top-level attribute `name` to decide on alone: a place that a
        mapped pattern matches and no mapped pattern lies below, or a place with no mapped
        pattern below (decided by its nearest mapped ancestor). Yields (the pattern of the
        nearest mapped ancestor or self, or () for none; the location; the value)."""

        def go(v: Any, pat: Pattern, loc: tuple[str | int, ...], owner: Pattern,
               ) -> Iterator[tuple[Pattern, Location, Any]]:
            if self.mapped(pat):
                owner = pat
            if not self.has_below(pat):
                yield owner, _location(loc), v
                return
            if isinstance(v, dict):
                for k in sorted(v):
                    yield from go(v[k], (*pat, k), (*loc, k), owner)
            elif isinstance(v, list):
                for i, e in enumerate(v):
                    yield from go(e, (*pat, ALL), (*loc, i), owner)
            else:  # a scalar where the map expects a map or a list
                yield owner, _location(loc), v

        yield from go(value, (name,), (name,), ())
