"""Bytewax dataflows: they only wire `state/` to bytewax, Redis and files."""
