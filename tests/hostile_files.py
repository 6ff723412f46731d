"""Awkward and hostile image files, made on the fly, for the library's and the server's upload tests.

Each entry: name -> (file bytes, suffix, what nvg_core says): a regex of its ValueError, or None when the file
is read (the server must then give exactly what nvg_core makes of the same bytes).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _encoded(image: Image.Image, format: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return buffer.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims width x height (a decompression bomb's header)."""
    data = bytearray(_encoded(Image.new("L", (1, 1)), "PNG"))
    header = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(header))
    return bytes(data)


def _picture(width: int = 96, height: int = 64) -> Image.Image:
    """Blocks of colour with a diagonal, so orientation and structure matter."""
    y, x = np.mgrid[:height, :width]
    rgb = np.stack([(x * 255 // width), (y * 255 // height), ((x > y) * 200 + 30)], -1).astype(np.uint8)
    return Image.fromarray(rgb)


def hostile_files() -> dict[str, tuple[bytes, str, str | None]]:
    picture = _picture()
    rgba = picture.convert("RGBA")
    half = np.asarray(rgba).copy()
    half[:, :48, 3] = 0
    half[:, 48:, 3] = 128
    deep = Image.fromarray((np.asarray(picture.convert("L")).astype(np.uint16) * 257))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    frames = [_picture(), _picture().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    animated = _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    valid = _encoded(picture, "PNG")
    return {
        "bomb header": (_png_declaring(100_000, 100_000), "png", "far more pixels|too large"),
        "over the pixel limit": (_png_declaring(8000, 6000), "png", "too large"),
        "empty": (b"", "png", "empty"),
        "truncated": (valid[: len(valid) // 2], "png", "truncated or damaged"),
        "not an image": (b"Hello, this is a text file and not a picture.\n" * 20, "png", "not an image"),
        "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
                "svg", "SVG"),
        "zero size": (_png_declaring(0, 10), "png", "not an image|zero size"),
        "1x4000": (_encoded(Image.new("RGB", (1, 4000), (200, 30, 30)), "PNG"), "png", "longer than wide"),
        "transparent": (_encoded(Image.new("RGBA", (40, 40), (0, 0, 0, 0)), "PNG"), "png", None),
        "half transparent": (_encoded(Image.fromarray(half), "PNG"), "png", None),
        "16-bit": (_encoded(deep, "PNG"), "png", None),
        "cmyk jpeg": (_encoded(picture.convert("CMYK"), "JPEG", quality=95), "jpg", None),
        "exif rotated": (_encoded(picture, "JPEG", quality=95, exif=exif), "jpg", None),
        "1 px": (_encoded(Image.new("RGB", (1, 1), (10, 200, 90)), "PNG"), "png", None),
        "animated": (animated, "gif", None),
    }
