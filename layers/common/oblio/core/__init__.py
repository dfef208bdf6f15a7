"""The bottom layer: errors, the clock, settings, names, observability, identity
parsing, the data map, the task boundary. Imports nothing else of oblio."""
