"""Many subjects or items at once: the chunked pipeline, bulk erasure, retention."""
