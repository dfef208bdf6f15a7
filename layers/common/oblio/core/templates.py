"""Templates of attributes and constants: `TENANT#{tenant}#EMP#{employee_id}` (a key),
`{tenant}-employees` (a table name), `{tenant}/employees/{employee_id}/` (a prefix of files).

A template renders from values (a key condition, a prefix to list), gives the constant part
it starts with (a `begins_with` on a sort key), and parses a string back into its fields (the
employee id inside a partition key). `{tenant}` is the request's tenant; every other field is
an attribute (or an attribute path without `[]`) of the item.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

TENANT = "tenant"

_FIELD = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")


class TemplateError(ValueError):
    """A template the data map cannot use; the message says why (never a value)."""


@dataclass(frozen=True)
class Template:
    text: str
    #: constants and field names, alternating, starting and ending with a constant ("" if
    #: the template starts or ends with a field)
    parts: tuple[str, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        return self.parts[1::2]

    @property
    def constant(self) -> bool:
        return len(self.parts) == 1

    def render(self, values: Mapping[str, Any] | Callable[[str], Any]) -> str | None:
        """The string, or None when a field has no value (an empty value is none: a
        rendered prefix never widens because a value is missing)."""
        text, whole = self._fill(values)
        return text if whole else None

    def prefix(self, values: Mapping[str, Any] | Callable[[str], Any]) -> str:
        """The template rendered up to the first field without a value: what every string
        it makes for these values starts with."""
        return self._fill(values)[0]

    def _fill(self, values: Mapping[str, Any] | Callable[[str], Any]) -> tuple[str, bool]:
        """The template filled up to the first field without a value, and whether every
        field had one."""
        get = values if callable(values) else values.get
        out = []
        for i, part in enumerate(self.parts):
            if i % 2 == 0:
                out.append(part)
                continue
            text = scalar(get(part))
            if text is None:
                return "".join(out), False
            out.append(text)
        return "".join(out), True

    def known(self, names: set[str]) -> bool:
        """Every field is among `names`."""
        return set(self.fields) <= names

    def match(self, value: Any) -> dict[str, str] | None:
        """The fields of a string the template made, or None if it did not make it."""
        if not isinstance(value, str):
            return None
        m = _regex(self.parts).match(value)
        if m is None:
            return None
        return {name: m.group(f"f{i}") for i, name in enumerate(self.fields)}


def scalar(value: Any) -> str | None:
    """A value as it appears inside a template: strings and numbers; nothing else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal):
        value = int(value) if value == value.to_integral_value() else value
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


@lru_cache(maxsize=4096)
def _regex(parts: tuple[str, ...]) -> re.Pattern[str]:
    pattern = ""
    n = len(parts) // 2
    for i, part in enumerate(parts):
        if i % 2 == 0:
            pattern += re.escape(part)
        else:
            k = i // 2
            # fields are lazy except the last, so "A#{x}#B#{y}" splits at the first "#B#"
            pattern += f"(?P<f{k}>.+)" if k == n - 1 else f"(?P<f{k}>.+?)"
    return re.compile(f"^{pattern}$", re.DOTALL)


@lru_cache(maxsize=4096)
def parse(text: str) -> Template:
    """Parse `A#{x}#B`; raises TemplateError naming what is wrong."""
    if not isinstance(text, str) or not text:
        raise TemplateError("a template must be a non-empty string, e.g. "
                            "'TENANT#{tenant}#EMP#{employee_id}'")
    parts: list[str] = []
    last = 0
    for m in _FIELD.finditer(text):
        parts.append(text[last:m.start()])
        name = m.group(1)
        if not _NAME.match(name):
            raise TemplateError(f"'{text}': '{{{name}}}' does not name an attribute; a field "
                                "is an attribute name (or a path without []) in braces, e.g. "
                                "{employee_id}")
        if parts and len(parts) > 1 and parts[-1] == "":
            raise TemplateError(f"'{text}': two fields side by side cannot be told apart "
                                "when a key is read back; put a constant between them")
        parts.append(name)
        last = m.end()
    parts.append(text[last:])
    for i in range(0, len(parts), 2):
        if "{" in parts[i] or "}" in parts[i]:
            raise TemplateError(f"'{text}': unbalanced braces; a field is written {{name}}")
    return Template(text, tuple(parts))


def is_template(text: str) -> bool:
    return isinstance(text, str) and bool(_FIELD.search(text))
