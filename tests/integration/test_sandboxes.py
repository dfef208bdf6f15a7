"""A local stack whose Lambda invocations run in sandbox processes (OBLIO_LOCAL_SANDBOXES, what
the bulk benchmark uses) erases a subject end to end: her contact is gone from the raw table,
and the handlers ran in the sandboxes, not in the stack's process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from infra.local.stack import ROOT


def test_a_sandboxed_stack_erases_a_subject_end_to_end():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OBLIO_",
                                                                       "MOTO_"))}
    done = subprocess.run([sys.executable, "-m", "tests.integration.sandboxed"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "completed", result
    assert result["before"] == 1 and result["after"] == 0, result
    # one after the other, the workflow's tasks found a warm worker: at least one started
    assert result["sandboxes_started"] >= 1 and result["here"] == [], result
