"""The control plane: tenants and keys, crypto, the request record, audit, suppression,
the consent ledger, signed links."""
