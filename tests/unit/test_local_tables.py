"""What `oblio local up` derives from a data map to create your tables, and how it reads a
fixture directory (no AWS: the map and files alone)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra.local.yours import FixtureError, read_fixtures, table_specs
from oblio.core import datamap
from oblio.core.errors import DataMapError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "my-product"


def _example() -> datamap.DataMap:
    return datamap.load(EXAMPLE / "map.yaml")


def test_an_index_a_find_names_is_keyed_by_the_tenant_and_the_finds_attribute():
    specs = {s.name: s for s in table_specs(_example())}
    assert specs["my-contacts"].key == ("tenant_id", "contact_id")
    assert specs["my-contacts"].indexes == {"by_email": ("tenant_id", "email")}
    assert specs["my-orders"].indexes == {"by_contact_id": ("tenant_id", "contact_id")}
    assert specs["my-orders"].type_of("order_id") == "S"


def test_the_demo_maps_sweep_index_and_ttl_are_derived_too():
    dm = datamap.load(Path(datamap.__file__).parents[1] / "datamaps" / "demo.yaml")
    specs = {s.name: s for s in table_specs(dm)}
    contacts = specs["demo-contacts"]
    assert contacts.indexes["by_sweep"] == ("sweep_bucket", "last_activity_at")
    assert specs["demo-tickets"].ttl_attribute == "purge_at"


def test_key_types_say_which_keys_are_numbers_and_must_name_attributes():
    raw = yaml.safe_load((EXAMPLE / "map.yaml").read_text())
    raw["tables"]["orders"]["key_types"] = {"order_id": "N"}
    spec = {s.name: s for s in table_specs(datamap.parse(raw))}["my-orders"]
    assert spec.type_of("order_id") == "N"
    raw["tables"]["orders"]["key_types"] = {"nope": "N"}
    with pytest.raises(DataMapError, match="key_types names 'nope'"):
        datamap.parse(raw)


def test_fixtures_are_read_whole_before_anything_is_written(tmp_path):
    (tmp_path / "my-contacts.jsonl").write_text(
        '{"tenant_id": "acme", "contact_id": "c-1", "score": 1.25, "tags": ["a"]}\n\n'
        '{"tenant_id": "acme", "contact_id": 7}\n')
    got = read_fixtures(_example(), tmp_path)
    rows = got.items["my-contacts"]
    assert [str(r["contact_id"]) for r in rows] == ["c-1", "7"]
    assert str(rows[0]["score"]) == "1.25" and rows[0]["tags"] == ["a"]
    assert got.summary() == "2 items in 1 table, 0 files"


def test_every_bad_line_of_every_file_is_reported_at_once(tmp_path):
    (tmp_path / "my-contacts.jsonl").write_text('[1]\n{"tenant_id": "acme"}\n')
    (tmp_path / "my-orders.jsonl").write_text('{"tenant_id": "acme", "order_id": "o"\n')
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FixtureError) as err:
        read_fixtures(_example(), tmp_path)
    problems = "\n".join(err.value.problems)
    assert "my-contacts.jsonl:1: not a JSON object" in problems
    assert "my-contacts.jsonl:2: the item has no contact_id" in problems
    assert "my-orders.jsonl:1: not a JSON object" in problems
    assert "notes.txt: not a fixture" in problems
