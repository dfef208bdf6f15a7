"""The `oblio` command line: errors are one line with the fix, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from infra import cli
from infra.local.stack import free_port, port_free

ROOT = Path(__file__).resolve().parents[2]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("oblio ")


def test_a_missing_csv_is_refused_before_any_job_is_created(capsys, tmp_path):
    # the API URL is a closed port: had the command called it, it would say so
    code, _, err = _run(capsys, "bulk-erase", str(tmp_path / "nope.csv"), "--api-url",
                        f"http://127.0.0.1:{free_port()}", "--api-key", "k")
    assert code == 2
    assert "nope.csv: no such file" in err and "Traceback" not in err


def test_a_stack_that_is_down_is_said_in_one_line(capsys):
    code, _, err = _run(capsys, "sweep", "--api-url", f"http://127.0.0.1:{free_port()}",
                        "--api-key", "k")
    assert code == 2
    assert "does not answer" in err and "make run" in err and len(err.splitlines()) == 1


def test_no_local_state_is_said_in_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(capsys, "sweep")
    assert code == 2
    assert "no local stack found" in err and "Traceback" not in err


def test_a_port_left_in_time_wait_counts_as_free_and_a_listening_one_does_not():
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    server.listen()
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    assert not port_free(port)  # listening
    conn.close()  # the server closes first: its side of the connection is in TIME_WAIT
    client.close()
    server.close()
    assert port_free(port)


def test_local_up_on_a_busy_port_is_refused_in_one_line(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "infra.cli", "local", "up", "--no-demo",
             "--aws-port", str(busy.getsockname()[1]), "--api-port", str(free_port()),
             "--state", str(tmp_path / "s.json")],
            capture_output=True, text=True, timeout=120, cwd=ROOT)
    finally:
        busy.close()
    assert done.returncode == 2
    assert "is in use: choose another with --aws-port / --api-port" in done.stderr
    assert "Traceback" not in done.stderr


def _start(state: Path, api_port: int, aws_port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "local", "up", "--no-demo", "--api-port",
         str(api_port), "--aws-port", str(aws_port), "--state", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Press Ctrl-C to stop." in line:
            return proc
    raise AssertionError(f"the stack did not start (exit {proc.wait()})")


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(timeout=20)


def test_one_state_file_one_stack_and_a_restart_on_the_same_ports_works(tmp_path):
    state, api_port, aws_port = tmp_path / "local.json", free_port(), free_port()
    first = _start(state, api_port, aws_port)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "infra.cli", "local", "up", "--no-demo", "--api-port",
             str(free_port()), "--aws-port", str(free_port()), "--state", str(state)],
            capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert second.returncode == 2
        assert "another local stack is running" in second.stderr
    finally:
        _stop(first)
    assert not state.exists()  # a stopped stack leaves no stale state behind
    again = _start(state, api_port, aws_port)  # the ports may be in TIME_WAIT: still free
    _stop(again)


def test_tenants_and_keys_from_the_command_line(capsys, stack):
    import re
    import uuid

    url, op = stack.info["api_url"], stack.info["operator_key"]
    tid = f"cli-{uuid.uuid4().hex[:8]}"
    code, out, _ = _run(capsys, "tenants", "create", tid, "--name", "CLI Ltd", "--api-url", url,
                        "--api-key", op)
    assert code == 0 and f"tenant {tid} created" in out and "shown this once" in out
    admin = re.search(r"admin key (key_\w+): (obl_\S+)", out)
    assert admin
    code, out, _ = _run(capsys, "tenants", "list", "--api-url", url, "--api-key", op)
    assert code == 0 and tid in out
    code, out, _ = _run(capsys, "keys", "create", "--tenant", tid, "--scope", "dsr:read",
                        "--name", "reader", "--api-url", url, "--api-key", op)
    made = re.search(r"key (key_\w+): (obl_\S+)", out)
    assert code == 0 and made
    code, out, _ = _run(capsys, "keys", "rotate", made.group(1), "--tenant", tid,
                        "--api-url", url, "--api-key", op)
    rotated = re.search(r"key (key_\w+) \(replaces (key_\w+), now revoked\): (obl_\S+)", out)
    assert code == 0 and rotated and rotated.group(2) == made.group(1)
    # a tenant admin's key lists and revokes its own tenant's keys
    code, out, _ = _run(capsys, "keys", "revoke", rotated.group(1), "--api-url", url,
                        "--api-key", admin.group(2))
    assert code == 0 and "revoked" in out
    code, out, _ = _run(capsys, "keys", "list", "--api-url", url, "--api-key", admin.group(2))
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert "active" in lines[admin.group(1)]
    assert "revoked" in lines[made.group(1)] and "revoked" in lines[rotated.group(1)]
    assert "obl_" not in out  # a key is never shown again


def test_a_tenant_key_cannot_create_tenants_and_says_so_in_one_line(capsys, stack):
    url, key = stack.info["api_url"], stack.info["tenants"]["demo"]["api_key"]
    code, _, err = _run(capsys, "tenants", "create", "nope-x", "--api-url", url,
                        "--api-key", key)
    assert code == 2 and "403" in err and "operator key" in err
    assert len(err.splitlines()) == 1 and key not in err
