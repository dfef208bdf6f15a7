"""One subject's traversal: find, plan, apply, verify, evidence."""
