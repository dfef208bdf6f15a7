"""Secrets Manager: the one secret oblio reads itself (the operator key, whose hash opens the
operator scope above tenants)."""

from __future__ import annotations

from oblio.store import aws


def read(name: str) -> str | None:
    """The secret's current string value; None when there is no such secret."""
    sm = aws.client("secretsmanager")
    try:
        value: str = sm.get_secret_value(SecretId=name)["SecretString"]
    except sm.exceptions.ResourceNotFoundException:
        return None
    return value


def write(name: str, value: str) -> None:
    """Create the secret, or give it a new value (the local stack's operator key)."""
    sm = aws.client("secretsmanager")
    try:
        sm.create_secret(Name=name, SecretString=value)
    except sm.exceptions.ResourceExistsException:
        sm.put_secret_value(SecretId=name, SecretString=value)
