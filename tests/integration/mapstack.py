"""A local stack of a user's own data map, started as a user starts one: `oblio local up
--datamap FILE --no-demo --fixtures DIR --tenant NAME...` in its own process, on free ports,
with an environment free of the suite's AWS and oblio settings. The integration conftest
hands it out as the `map_stack` fixture factory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import requests as http

from infra.local.stack import free_port

ROOT = Path(__file__).resolve().parents[2]


class StackDidNotStart(RuntimeError):
    pass


def env() -> dict[str, str]:
    """This process's environment without AWS_*, OBLIO_* and MOTO_* (the suite's own stack
    sets those; a user's shell would not have them)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OBLIO_",
                                                                       "MOTO_"))}


@contextmanager
def running(datamap: Path, fixtures: Path | None, tenants: tuple[str, ...], state_dir: Path,
            timeout: float = 180, extra: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
    """The stack, until the block ends: `{"info"` (its `.oblio/local.json`), `"output"` (what
    it printed), `"ddb"`, `"s3"` (boto3 clients of the local AWS holding the data map's
    tables and buckets), `"own_ddb"` (of oblio's own local AWS)}`. `extra`: more arguments of
    `oblio local up`."""
    state = state_dir / "local.json"
    args = [sys.executable, "-m", "infra.cli", "local", "up", "--datamap", str(datamap),
            "--no-demo", *(("--fixtures", str(fixtures)) if fixtures else ())]
    for t in tenants:
        args += ["--tenant", t]
    args += ["--api-port", str(free_port()), "--aws-port", str(free_port()),
             "--state", str(state), *extra]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env(), cwd=ROOT)
    try:
        out: list[str] = []
        deadline = time.monotonic() + timeout
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            out.append(line)
            if "Press Ctrl-C to stop." in line:
                break
        if not state.exists():
            raise StackDidNotStart("the stack did not start:\n" + "".join(out))
        info = json.loads(state.read_text())
        kw = {"region_name": info["region"], "aws_access_key_id": "testing",
              "aws_secret_access_key": "testing"}
        data = info.get("data_endpoint_url", info["aws_endpoint_url"])
        yield {"info": info, "output": "".join(out),
               "ddb": boto3.client("dynamodb", endpoint_url=data, **kw),
               "s3": boto3.client("s3", endpoint_url=data, **kw),
               "own_ddb": boto3.client("dynamodb", endpoint_url=info["aws_endpoint_url"], **kw)}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def call(world: dict[str, Any], tenant: str, method: str, path: str, body: Any = None,
         **params: str) -> http.Response:
    """An API call as `tenant`'s admin key."""
    key = world["info"]["tenants"][tenant]["api_key"]
    return http.request(method, world["info"]["api_url"] + path, params=params or None,
                        json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)


@contextmanager
def their_aws(timeout: float = 30) -> Iterator[str]:
    """A local AWS of the user's own (a moto server in its own process, as a team runs one:
    a server in this process would share the suite's in-memory AWS), until the block ends;
    yields its URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env(), cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                http.get(f"{url}/moto-api/", timeout=2)
                break
            except http.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise StackDidNotStart(f"moto server on {url} did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def erase(world: dict[str, Any], tenant: str, email: str, timeout: float = 90,
          ) -> dict[str, Any]:
    """File a confirmed erasure of `email` as `tenant`'s admin and poll it until it leaves
    received/queued/running; returns the request as GET answers it."""
    filed = call(world, tenant, "POST", "/v1/requests", {
        "type": "erasure", "subject": {"email": email}, "confirm": True})
    assert filed.status_code == 202, filed.text
    path = f"/v1/requests/{filed.json()['request_id']}"
    deadline = time.monotonic() + timeout
    while True:
        got: dict[str, Any] = call(world, tenant, "GET", path).json()
        if got["status"] not in ("received", "queued", "running", "finishing") or \
                time.monotonic() > deadline:
            return got
        time.sleep(0.5)
