"""The fault suite: a world of targets and bystanders run through the local stack under a fault
plan (infra/local/faults.py), checked by raw reads (tests/faults/suite.py)."""
