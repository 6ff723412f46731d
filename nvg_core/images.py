"""Images in and out: any PIL image, array, path or bytes to model pixels, and back.

Input rule (documented for users): the image is converted to RGB (alpha composited on white, greyscale,
palette and CMYK images converted by Pillow), its shorter side is resized with Lanczos to
round(resolution * resize_ratio), and the centre `resolution` square is cropped. The authors' ImageNet
evaluation uses resize_ratio = 1.125 (256 px: shorter side 288, then the centre 256); the default 1.0 keeps
the whole shorter side.
Value ranges: uint8 data is 0..255 and float arrays are 0..1 (numpy convention). Deeper data (uint16
arrays, Pillow modes I;16, I and F) is read on the 8-bit scale when every value fits in 0..255 (Pillow's
own L -> I/F conversions keep that scale) and on the 16-bit scale 0..65535 otherwise (16-bit PNG/TIFF).
Output rule (the authors'): uint8 = clamp((x + 1) / 2 * 255) truncated, not rounded.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

ImageLike = Union[Image.Image, np.ndarray, str, os.PathLike, bytes]
MAX_PIXELS = 64_000_000  # larger inputs are refused rather than decoded


def load_image(source: ImageLike) -> Image.Image:
    """Open a path or bytes as a PIL image (first frame), with clear errors for missing or corrupt files."""
    if isinstance(source, Image.Image):
        try:
            source.load()  # a lazily opened image may still turn out to be truncated
        except (OSError, SyntaxError) as error:
            raise ValueError(f"could not read the given PIL image: {error}") from error
        return source
    if isinstance(source, np.ndarray):
        return _array_to_pil(source)
    if isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise ValueError(f"no image file at {os.fspath(source)!r}")
        data = Path(source).read_bytes()  # read whole, so no file handle stays open
    elif isinstance(source, (bytes, bytearray)):
        data = source
    else:
        raise ValueError(f"cannot read an image from a {type(source).__name__}; pass a PIL image, a numpy array, "
                         "a file path or the file's bytes")
    if not data:
        raise ValueError(f"the image data is empty: {_describe(source)}")
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_PIXELS:
            raise ValueError(f"the image is too large ({image.width}x{image.height}); the limit is {MAX_PIXELS:,} pixels")
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"could not read an image from {_describe(source)}: {error}") from error
    return image


def _describe(source: bytes | str | os.PathLike) -> str:
    return f"{len(source)} bytes of data" if isinstance(source, (bytes, bytearray)) else f"the file {os.fspath(source)!r}"


def _array_to_pil(array: np.ndarray) -> Image.Image:
    """(H, W), (H, W, 1/3/4) arrays of uint8, uint16, bool or float in [0, 1] to a PIL image."""
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ValueError(f"an image array must be (H, W) or (H, W, 1|3|4), got shape {array.shape} "
                         "(for a batch, pass a list of images)")
    if array.size == 0:
        raise ValueError(f"the image array is empty (shape {array.shape})")
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError("the image array contains NaN or infinite values")
        if array.min() < -1e-3 or array.max() > 1 + 1e-3:
            raise ValueError(f"float image arrays must be in [0, 1], got values in [{array.min():g}, {array.max():g}] "
                             "(divide 0..255 data by 255, or pass it as uint8)")
        array = np.round(np.clip(array, 0, 1) * 255).astype(np.uint8)
    elif array.dtype == np.uint16:
        array = _deep_to_uint8(array)
    elif array.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8, uint16, bool or float in [0, 1], got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(array))


def _deep_to_uint8(values: np.ndarray) -> np.ndarray:
    """16/32-bit or float values to uint8: on the 8-bit scale if all fit in 0..255, else on the 16-bit
    scale (clipped to 0..65535)."""
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError("the image contains NaN or infinite values")
    scale = 1.0 if values.max() <= 255 else 255 / 65535
    return np.round(np.clip(values * scale, 0, 255)).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of any PIL mode: transparency composited on white, deeper modes by the module's rule."""
    if image.width == 0 or image.height == 0:
        raise ValueError(f"the image has zero size ({image.width}x{image.height})")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = Image.fromarray(_deep_to_uint8(np.asarray(image)))  # 2-D uint8 -> mode L
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def resize_center_crop(image: Image.Image, resolution: int, resize_ratio: float = 1.0) -> Image.Image:
    """Shorter side to round(resolution * resize_ratio) with Lanczos, then the centre square crop."""
    if resolution < 1 or resize_ratio < 1:
        raise ValueError(f"need resolution >= 1 and resize_ratio >= 1 (a smaller ratio would crop outside the "
                         f"image), got {resolution} and {resize_ratio}")
    target = round(resolution * resize_ratio)
    scale = target / min(image.size)
    width, height = max(target, round(image.width * scale)), max(target, round(image.height * scale))
    image = image.resize((width, height), Image.LANCZOS)
    left, top = (width - resolution) // 2, (height - resolution) // 2
    return image.crop((left, top, left + resolution, top + resolution))


def to_pixels(images: ImageLike | Sequence[ImageLike], resolution: int, resize_ratio: float = 1.0) -> torch.Tensor:
    """One image or a list -> (B, 3, resolution, resolution) float pixels in [-1, 1]."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("no images given")
        items = list(images)
    else:
        items = [images]
    arrays = [np.asarray(resize_center_crop(to_rgb(load_image(item)), resolution, resize_ratio)) for item in items]
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return pixels / 127.5 - 1.0


def to_uint8(pixels_BCHW: torch.Tensor) -> np.ndarray:
    """Pixels in [-1, 1] -> (B, H, W, 3) uint8 by the authors' rule: clamp((x + 1) / 2 * 255), truncated."""
    scaled = ((pixels_BCHW.detach().float().cpu() + 1) / 2 * 255).clamp(0, 255)
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def to_pil(pixels_BCHW: torch.Tensor) -> list[Image.Image]:
    """Pixels in [-1, 1] -> a list of RGB PIL images."""
    return [Image.fromarray(array) for array in to_uint8(pixels_BCHW)]
