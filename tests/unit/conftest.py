"""Unit tests: the domain in-process, AWS from moto's in-process mock, no sockets.

Settings are read once from the environment (and PynamoDB models take their table names at
import), so the environment is set here, before anything imports oblio. AWS_ENDPOINT_URL would
send every client to a server: it is removed so that moto's in-process mock answers."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from moto import mock_aws

# oblio is imported only inside fixtures and by test modules, after this
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "eu-west-1", "POWERTOOLS_TRACE_DISABLED": "true"})
for _name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_name, None)


def _forget_process_state() -> None:
    """Clients, tenant keys and tenants cached per process belong to one mock's lifetime."""
    from oblio.control import crypto, tenants
    from oblio.store import aws as oblio_aws

    oblio_aws.reset_clients()
    crypto._cache.clear()
    tenants._cache.clear()
    tenants.forget_operator_key()


@contextmanager
def _fresh_aws() -> Iterator[None]:
    from infra.catalogue import CATALOGUE
    from infra.local.provision import _create_table
    from oblio.core.settings import get_settings
    from oblio.store import aws as oblio_aws

    with mock_aws():
        _forget_process_state()
        s = get_settings()
        kms = oblio_aws.client("kms")
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=s.kms_alias, TargetKeyId=key)
        for t in CATALOGUE.tables:
            _create_table(s, t)
        try:
            yield
        finally:
            _forget_process_state()


@pytest.fixture
def aws() -> Iterator[None]:
    """A fresh in-process AWS with oblio's own tables (and the demo domain's) from the
    catalogue, and the deployment's KMS key under its alias."""
    with _fresh_aws():
        yield


@pytest.fixture(scope="module")
def module_aws() -> Iterator[None]:
    """The same AWS shared by one module's tests, each working in its own `tenant`: every
    key carries the tenant, so tests cannot see each other's items (and setting up AWS once
    keeps the suite fast)."""
    with _fresh_aws():
        yield


@pytest.fixture
def tenant() -> str:
    """A tenant id of this test's own."""
    return f"tenant-{next(_tenants)}"


_tenants = itertools.count()


@pytest.fixture(scope="module")
def provisioned(module_aws: None) -> Iterator[None]:
    """oblio's resources of the catalogue, once for a module (`usefixtures("provisioned")`)."""
    from tests.unit import world

    with world.provisioned():
        yield


@pytest.fixture
def t(tenant: str) -> object:
    """This test's tenant, made (with its keys and settings); the events that earlier tests
    emitted are drained first, so that what the test sees is its own."""
    from tests.unit import world

    world.events()
    return world.new_tenant(tenant)


@pytest.fixture(scope="session")
def demo_map():
    """The shipped demo data map, loaded once."""
    from oblio.core import datamap
    from oblio.core.settings import DEMO_DATAMAP

    return datamap.load(DEMO_DATAMAP)


@pytest.fixture(scope="session")
def keys():
    """A tenant's keys from a fixed data key (no KMS needed)."""
    from oblio.control.crypto import TenantKeys

    return TenantKeys.from_data_key("demo", b"k" * 32)


@pytest.fixture(autouse=True)
def _no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit suite talks to nothing: a connection attempt is a test failure."""
    import socket

    def refuse(self: socket.socket, address: object) -> None:
        raise AssertionError(f"a unit test tried to connect to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
