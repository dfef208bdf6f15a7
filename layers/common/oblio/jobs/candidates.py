"""A retention sweep's candidates: the items of a policy's table dated before its cutoff,
read page by page through the table's sweep index (one partition a month bucket,
`<tenant>#<YYYY-MM>`, sorted by the date), or through the parallel segmented Scan its data
map declares as the fallback; then sorted into those to act on and those counted aside (on
legal hold, filtered out, already anonymised).

Used by a sweep's find step and by a policy's dry run, so that both count the same."""

from __future__ import annotations

import contextvars
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from oblio.core import clock, layout
from oblio.core.datamap import DataMap
from oblio.pipeline import find
from oblio.store import tables as store


class Finder:
    """A policy's candidates, round by round: each round reads one page of a few parts (month
    buckets of the sweep index, or segments of the Scan fallback) at once. `state` maps each
    unfinished part to its resume point, so a find can stop after any round and go on."""

    def __init__(self, dm: DataMap, tenant_id: str, spec: dict[str, Any], cutoff: str,
                 page: int) -> None:
        self.dm, self.tenant_id, self.spec, self.cutoff = dm, tenant_id, spec, cutoff
        self.t = dm.tables[spec["table"]]
        sw = self.t.sweep
        assert sw is not None
        self.sweep = sw
        self.page = page
        self.index = spec.get("finder", "index") == "index"
        hold, flt = spec.get("hold_attribute"), spec.get("filter") or {}
        self.projection = (set(self.t.key.names) | {spec["date_attribute"], dm.anonymised_marker}
                           | set(self.t.s3_attributes()) | self.t.template_fields()
                           | set(flt)
                           | ({hold} if hold else set())
                           | ({self.t.entity.attribute} if self.t.entity is not None
                              and self.t.entity.attribute else set())
                           | ({self.t.ttl_attribute} if self.t.ttl_attribute else set()))
        self.now_epoch = int(clock.now().timestamp())

    def initial_state(self) -> dict[str, Any]:
        if self.index:
            end = clock.parse(self.cutoff)
            first = clock.add_months(end.replace(day=1), -self.sweep.horizon_months)
            parts, month = [], first
            while month.strftime("%Y-%m") <= end.strftime("%Y-%m"):
                parts.append(month.strftime("%Y-%m"))
                month = clock.add_months(month, 1)
        else:
            parts = [f"{s:03d}" for s in range(self.sweep.scan_segments)]
        return dict.fromkeys(parts, "")  # "" : from the start

    def _read(self, part: str, start: Any) -> tuple[list[dict[str, Any]], Any]:
        """One page of a part: the items of this table's entity type and tenant in it (a
        sweep index of a single table may hold other entity types' items too)."""
        if self.index:
            items, last = store.query_below(
                self.t.physical(self.tenant_id), self.sweep.index or "",
                (self.sweep.bucket_attribute, f"{self.tenant_id}#{part}"),
                (self.spec["date_attribute"], self.cutoff), self.page, start, self.projection)
            return [i for i in items if layout.selects(self.dm, self.t, i, self.tenant_id)], \
                last
        items, last = store.scan_page(self.t.physical(self.tenant_id), int(part),
                                      self.sweep.scan_segments,
                                      self.page, start, self.projection)
        mine = [i for i in items if i.get(self.dm.tenant_attribute) == self.tenant_id
                and layout.selects(self.dm, self.t, i, self.tenant_id)
                and isinstance(i.get(self.spec["date_attribute"]), str)
                and i[self.spec["date_attribute"]] < self.cutoff]
        return mine, last

    def round(self, state: dict[str, Any], pool: ThreadPoolExecutor,
              width: int) -> list[dict[str, Any]]:
        """Read one page of up to `width` unfinished parts (in parallel); moves `state`."""
        parts = sorted(state)[:width]
        futures = [pool.submit(contextvars.copy_context().run, self._read, p,
                               _decode(state[p])) for p in parts]
        out: list[dict[str, Any]] = []
        for part, fut in zip(parts, futures, strict=True):
            items, last = fut.result()
            out += items
            if last:
                state[part] = json.dumps(last)
            else:
                del state[part]
        return out

    def classify(self, items: list[dict[str, Any]], counts: dict[str, int]
                 ) -> list[dict[str, Any]]:
        """The items to act on; counts the others (on hold, filtered out, already done)."""
        hold, flt = self.spec.get("hold_attribute"), self.spec.get("filter") or {}
        keep: list[dict[str, Any]] = []
        for item in items:
            counts["candidates"] += 1
            if hold and item.get(hold) is True:
                counts["on_hold"] += 1
            elif any(item.get(k) != v for k, v in flt.items()):
                counts["filtered_out"] += 1
            elif self.spec["action"] == "anonymise" and self.dm.anonymised_marker in item:
                counts["already_done"] += 1
            else:
                if find.expired(self.t, item, self.now_epoch):
                    counts["expired"] += 1
                keep.append(item)
        return keep


def _decode(raw: Any) -> Any:
    return json.loads(raw) if isinstance(raw, str) and raw else None
