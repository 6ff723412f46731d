"""Images in and out: any PIL image, array, path or bytes to model pixels, and back.

Input rule (documented for users): the image is converted to RGB (alpha composited on white, greyscale
and palette images expanded, 16-bit and float images scaled by their range), its shorter side is resized
with Lanczos to `resolution * resize_ratio`, and the centre `resolution` square is cropped. The authors'
ImageNet evaluation uses resize_ratio = 1.125; the default 1.0 keeps the whole shorter side.
Output rule (the authors'): uint8 = clamp((x + 1) / 2 * 255) truncated, not rounded.
"""

from __future__ import annotations

import io
import os
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

ImageLike = Union[Image.Image, np.ndarray, str, os.PathLike, bytes]
MAX_PIXELS = 64_000_000  # larger inputs are refused rather than decoded


def load_image(source: ImageLike) -> Image.Image:
    """Open a path or bytes as a PIL image (first frame), with clear errors for missing or corrupt files."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return _array_to_pil(source)
    try:
        if isinstance(source, (bytes, bytearray)):
            if not source:
                raise ValueError("the image data is empty (0 bytes)")
            image = Image.open(io.BytesIO(source))
        else:
            if not os.path.isfile(source):
                raise ValueError(f"no image file at {os.fspath(source)!r}")
            image = Image.open(source)
        if image.width * image.height > MAX_PIXELS:
            raise ValueError(f"the image is too large ({image.width}x{image.height}); the limit is {MAX_PIXELS:,} pixels")
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"could not read an image from {_describe(source)}: {error}") from error
    return image


def _describe(source) -> str:
    return f"{len(source)} bytes of data" if isinstance(source, (bytes, bytearray)) else repr(os.fspath(source))


def _array_to_pil(array: np.ndarray) -> Image.Image:
    """(H, W), (H, W, 1/3/4) arrays of uint8, uint16, bool or float in [0, 1] to a PIL image."""
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ValueError(f"an image array must be (H, W) or (H, W, 1|3|4), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"the image array is empty (shape {array.shape})")
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError("the image array contains NaN or infinite values")
        array = np.round(np.clip(array, 0, 1) * 255).astype(np.uint8)
    elif array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8, uint16, bool or float in [0, 1], got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(array))


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of any PIL mode: transparency composited on white, 16-bit/float scaled by range."""
    if image.width == 0 or image.height == 0:
        raise ValueError(f"the image has zero size ({image.width}x{image.height})")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError("the image contains NaN or infinite values")
        low, high = values.min(), values.max()
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
        image = Image.fromarray(np.round(scaled * 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def resize_center_crop(image: Image.Image, resolution: int, resize_ratio: float = 1.0) -> Image.Image:
    """Shorter side to round(resolution * resize_ratio) with Lanczos, then the centre square crop."""
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
