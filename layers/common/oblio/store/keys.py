"""KMS: tenants' data keys, generated and unwrapped under the deployment's key."""

from __future__ import annotations

from oblio.core.settings import get_settings
from oblio.store import aws


def new_data_key() -> bytes:
    """A fresh AES-256 data key, returned encrypted under the deployment's KMS key."""
    resp = aws.client("kms").generate_data_key(KeyId=get_settings().kms_alias,
                                               KeySpec="AES_256")
    blob: bytes = resp["CiphertextBlob"]
    return blob


def unwrap(key_blob: bytes) -> bytes:
    """The plaintext of a data key that `new_data_key` returned."""
    plain: bytes = aws.client("kms").decrypt(CiphertextBlob=key_blob)["Plaintext"]
    return plain
