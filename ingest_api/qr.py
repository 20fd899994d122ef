"""QR codes for scan URLs, as PNG or SVG."""

from __future__ import annotations

import io
from typing import Literal

import qrcode
import qrcode.image.svg
from qrcode.constants import ERROR_CORRECT_H, ERROR_CORRECT_L, ERROR_CORRECT_M, ERROR_CORRECT_Q

ErrorCorrection = Literal["L", "M", "Q", "H"]
_LEVELS = {"L": ERROR_CORRECT_L, "M": ERROR_CORRECT_M, "Q": ERROR_CORRECT_Q, "H": ERROR_CORRECT_H}


def _code(data: str, ec: ErrorCorrection, box_size: int, border: int) -> qrcode.QRCode:
    code = qrcode.QRCode(error_correction=_LEVELS[ec], box_size=box_size, border=border)
    code.add_data(data)
    code.make(fit=True)
    return code


def png(data: str, ec: ErrorCorrection = "M", box_size: int = 8, border: int = 4) -> bytes:
    buf = io.BytesIO()
    _code(data, ec, box_size, border).make_image().save(buf, format="PNG")
    return buf.getvalue()


def svg(data: str, ec: ErrorCorrection = "M", box_size: int = 8, border: int = 4) -> bytes:
    buf = io.BytesIO()
    image = _code(data, ec, box_size, border).make_image(
        image_factory=qrcode.image.svg.SvgPathImage
    )
    image.save(buf)
    return buf.getvalue()
