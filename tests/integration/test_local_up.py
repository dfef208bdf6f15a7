"""`oblio local up` refuses a data map it cannot honour, and says which table and attribute."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.local.stack import ROOT, free_port

#: the shipped demo data map (a file of the project, read as a user would copy it)
DEMO = yaml.safe_load((ROOT / "layers/common/oblio/datamaps/demo.yaml").read_text())


def _up(tmp_path: Path, datamap: dict) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump(datamap))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OBLIO_",
                                                                       "MOTO_"))}
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", "local", "up", "--datamap", str(path),
         "--api-port", str(free_port()), "--aws-port", str(free_port()), "--no-demo"],
        capture_output=True, text=True, timeout=120, env=env)


def _variant(edit) -> dict:
    dm = copy.deepcopy(DEMO)
    edit(dm)
    return dm


@pytest.mark.parametrize("edit, expected", [
    (lambda dm: dm["tables"]["documents"].update(find=[]),
     ["table 'documents'", "cannot be reached from any identity"]),
    (lambda dm: dm["tables"]["contacts"]["attributes"]["address"].pop("anonymise"),
     ["table 'contacts'", "attribute 'address'", "no 'anonymise' rule"]),
    (lambda dm: dm["tables"]["tickets"]["find"][0].update({"from": "contacts.nope"}),
     ["table 'tickets'", "no attribute 'nope'"]),
    (lambda dm: dm["tables"]["blacklist"].update(on_erase="anonymise") or
     dm["tables"]["blacklist"]["attributes"]["email"].update(anonymise="null"),
     ["table 'blacklist'", "attribute 'email'", "part of the table's key"]),
    (lambda dm: dm["tables"]["contacts"].update(key={"partition": "tenant_id",
                                                     "sort": "id"}),
     ["table 'contacts' (demo-contacts)", "the table's key is (tenant_id, contact_id)"]),
    (lambda dm: dm["tables"]["tickets"]["find"][0].update(index="by_owner"),
     ["table 'tickets' (demo-tickets)", "index 'by_owner'", "does not exist"]),
])
def test_local_up_refuses_a_bad_data_map_and_names_table_and_attribute(tmp_path, edit,
                                                                       expected):
    done = _up(tmp_path, _variant(edit))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refusing to start" in done.stderr
    for fragment in expected:
        assert fragment in done.stderr, done.stderr
