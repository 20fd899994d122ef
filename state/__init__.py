"""The billing rules of SPEC.md as pure Python: no I/O, no bytewax, no wall clock.

Events are plain dicts shaped as SPEC's event log (already validated); outputs are
plain dicts shaped as SPEC's outputs. Live time arrives only as event `ts` values
and watermarks.
"""
