"""ISO 4217 minor-unit exponents, for showing amounts (billing itself only uses minor units).

Every currency not listed has 2 decimals. The list is ISO 4217's currencies with
0, 3 or 4 decimals (the dashboard has the same table: ingest_api/static).
"""

from __future__ import annotations

EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    "CLF": 4,
    "UYW": 4,
}


def exponent(currency: str) -> int:
    return EXPONENTS.get(currency, 2)


def format_minor(amount_minor: int, currency: str) -> str:
    """Exact decimal text: 12345 USD -> "123.45", 12345 JPY -> "12345", -5 KWD -> "-0.005"."""
    places = exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    digits = str(abs(amount_minor))
    if places == 0:
        return sign + digits
    digits = digits.rjust(places + 1, "0")
    return f"{sign}{digits[:-places]}.{digits[-places:]}"
