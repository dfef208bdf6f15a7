"""Unit tests: the domain in-process, AWS from moto's in-process mock, no sockets.

Settings are read once from the environment, so it is set here, before oblio is imported."""

from __future__ import annotations

import os

os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "eu-west-1", "POWERTOOLS_TRACE_DISABLED": "true"})

from collections.abc import Iterator

import pytest
from moto import mock_aws


@pytest.fixture
def aws() -> Iterator[None]:
    """A fresh in-process AWS with oblio's own tables and KMS key from the catalogue."""
    from infra.local.provision import _create_table
    from oblio import aws as oblio_aws
    from oblio import crypto, tenants
    from oblio.catalogue import CATALOGUE
    from oblio.settings import get_settings

    with mock_aws():
        oblio_aws.reset_clients()
        crypto._cache.clear()
        tenants._cache.clear()
        tenants._key_cache.clear()
        s = get_settings()
        kms = oblio_aws.client("kms")
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=s.kms_alias, TargetKeyId=key)
        for t in CATALOGUE.tables:
            _create_table(s, t)
        yield
        oblio_aws.reset_clients()
