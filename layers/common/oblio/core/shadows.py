"""Shadow attributes of identities stored as typed.

A table may hold identities as people typed them (`"  Anna.Berg@Example.COM "`,
`06 12 34 56 78`). The data map marks such an attribute `stored: as_typed`; oblio then keeps
the canonical form beside it, in `_oblio_<attribute>`, and finds the subject through an index
on that shadow. The backfill writes the shadows of the items already there, the stream
consumer keeps them current on every write; both ask `changes()` what to write, so that an
item whose shadows are right is not written again (which also ends the loop of a consumer
reading its own writes).
"""

from __future__ import annotations

from typing import Any

from oblio.core.identity import shadow_name, shadow_value
from oblio.core.mapmodel import DataMap, TableMap

__all__ = ["changes", "names", "shadow_name", "shadow_value", "tables_with_shadows", "wanted"]


def names(table: TableMap) -> dict[str, str]:
    """Each as-typed attribute -> its shadow attribute."""
    return {attr: shadow_name(attr) for attr in table.as_typed()}


def wanted(table: TableMap, item: dict[str, Any], region: str | None) -> dict[str, str | None]:
    """The shadow each as-typed attribute of `item` should have: its canonical form, or None
    (no shadow) when the attribute is absent or does not parse as its identity."""
    out: dict[str, str | None] = {}
    for attr, a in table.as_typed().items():
        assert a.identity is not None
        out[shadow_name(attr)] = shadow_value(a.identity, item.get(attr), a.region or region)
    return out


def changes(table: TableMap, item: dict[str, Any], region: str | None,
            ) -> dict[str, str | None]:
    """The shadows to write for `item`: name -> value to set, or None to remove. Empty when
    every shadow is already right."""
    return {name: value for name, value in wanted(table, item, region).items()
            if item.get(name) != value}


def tables_with_shadows(dm: DataMap) -> dict[str, TableMap]:
    """The logical tables that have at least one as-typed identity attribute."""
    return {name: t for name, t in dm.tables.items() if t.as_typed()}
