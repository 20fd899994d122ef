"""Exact integer arithmetic for money and time; no float ever gets here."""

from __future__ import annotations


def round_half_up(numerator: int, denominator: int) -> int:
    """round_half_up(numerator / denominator) for a non-negative rational, .5 up."""
    if numerator < 0 or denominator <= 0:
        raise ValueError("round_half_up takes a non-negative rational")
    return (2 * numerator + denominator) // (2 * denominator)


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)
