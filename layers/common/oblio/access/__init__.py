"""Access exports: collect, package, deliver."""
