"""Per-tenant keys: keyed HMACs that differ between tenants, stable subject references and
pseudonyms, identities encrypted so that only their tenant can read them."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag

from oblio.control import crypto
from oblio.control.crypto import TenantKeys
from oblio.store import keys as kms

OTHER = TenantKeys.from_data_key("other", b"o" * 32)


def test_hmac_is_stable_for_one_tenant(keys):
    again = TenantKeys.from_data_key("demo", b"k" * 32)
    assert keys.hmac("email", "a@b.c") == again.hmac("email", "a@b.c")
    assert len(keys.hmac("email", "a@b.c")) == 64


def test_hmac_differs_between_tenants_kinds_and_values(keys):
    mac = keys.hmac("email", "a@b.c")
    assert mac != OTHER.hmac("email", "a@b.c")
    assert mac != keys.hmac("external_id", "a@b.c")
    assert mac != keys.hmac("email", "a@b.d")
    assert "a@b.c" not in mac


def test_subject_ref_is_stable_and_independent_of_identity_order(keys):
    one = keys.subject_ref({"email": "a@b.c", "phone": "+393331234567"})
    two = keys.subject_ref({"phone": "+393331234567", "email": "a@b.c"})
    assert one == two and one.startswith("s_") and len(one) == 42
    assert one != keys.subject_ref({"email": "a@b.c"})
    assert one != OTHER.subject_ref({"email": "a@b.c", "phone": "+393331234567"})


def test_encrypt_decrypt_round_trip_without_the_value_in_the_blob(keys):
    data = {"email": "mario.rossi@example.com", "phone": "+393331234567"}
    blob = keys.encrypt(data)
    assert "mario" not in blob and "3331234567" not in blob
    assert keys.decrypt(blob) == data
    assert keys.encrypt(data) != blob  # a fresh nonce each time


def test_decrypt_with_another_tenants_keys_fails(keys):
    blob = keys.encrypt({"email": "a@b.c"})
    with pytest.raises(InvalidTag):
        OTHER.decrypt(blob)


def test_decrypt_under_another_tenant_id_fails_even_with_the_same_data_key(keys):
    # the tenant id is bound into the ciphertext: a blob copied to another tenant's record
    # does not open there
    blob = keys.encrypt({"email": "a@b.c"})
    with pytest.raises(InvalidTag):
        TenantKeys.from_data_key("demo-child", b"k" * 32).decrypt(blob)


def test_tampered_ciphertext_fails(keys):
    import base64

    raw = bytearray(base64.b64decode(keys.encrypt({"email": "a@b.c"})))
    raw[-1] ^= 1
    with pytest.raises(InvalidTag):
        keys.decrypt(base64.b64encode(bytes(raw)).decode())


def test_pseudonym_number_is_stable_and_in_range(keys):
    refs = [f"s_{i:040d}" for i in range(200)]
    numbers = [keys.pseudonym_number(r) for r in refs]
    assert numbers == [keys.pseudonym_number(r) for r in refs]
    assert all(0 <= n < 10_000 for n in numbers)
    assert len(set(numbers)) > 150  # spread, not a constant
    assert all(0 <= keys.pseudonym_number(r, digits=2) < 100 for r in refs)
    assert [OTHER.pseudonym_number(r) for r in refs] != numbers


def test_tenant_keys_come_from_a_kms_data_key_decrypted_once_per_process(aws):
    from oblio.store import aws as oblio_aws

    blob = kms.new_data_key()
    assert isinstance(blob, bytes) and len(blob) > 32
    with oblio_aws.counting() as io:
        first = crypto.tenant_keys("t1", blob)
        second = crypto.tenant_keys("t1", blob)
    assert first is second and io.calls["kms.Decrypt"] == 1
    assert first.decrypt(first.encrypt({"a": "b"})) == {"a": "b"}
    other = crypto.tenant_keys("t2", kms.new_data_key())
    assert other.hmac("email", "a@b.c") != first.hmac("email", "a@b.c")


def test_sha256_hex_takes_text_or_bytes():
    assert crypto.sha256_hex("abc") == crypto.sha256_hex(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
