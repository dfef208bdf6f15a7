"""Data access: one adapter per store. Nothing above this package builds raw boto3 calls."""
