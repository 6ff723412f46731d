"""Images in and out: any PIL image, array, path or bytes to model pixels, and back.

Input rule (documented for users): files are opened upright (EXIF orientation applied; the first frame of
an animation); images over MAX_PIXELS or more than MAX_ASPECT times longer than wide are refused from their
header, before decoding. The image is converted to RGB (alpha composited on white, greyscale,
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

import cv2
import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

ImageLike = Union[Image.Image, np.ndarray, str, os.PathLike, bytes]
MAX_PIXELS = 40_000_000  # larger images are refused from their header, before any decoding
MAX_ASPECT = 16  # longer strips are refused: resizing their shorter side to the model's would explode
FORMATS_HINT = "PNG, JPEG, WebP, GIF, BMP or TIFF"


def read_image(source: ImageLike) -> tuple[Image.Image, list[str]]:
    """Open a path, bytes, array or PIL image as a PIL image, upright (EXIF orientation applied), first frame
    of an animation; and notes, for people, on what was or will be adapted to make model pixels.

    Refused before decoding: over MAX_PIXELS, zero-size, or more than MAX_ASPECT times longer than wide.
    Errors are ValueErrors that name the problem, never a path or an object's repr (the app shows them)."""
    image = _array_to_pil(source) if isinstance(source, np.ndarray) else \
        source if isinstance(source, Image.Image) else _open(source)  # a file: only its header is read so far
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ValueError(f"the image is too large ({width}x{height}); the limit is {MAX_PIXELS:,} pixels")
    if min(width, height) == 0:
        raise ValueError(f"the image has zero size ({width}x{height})")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ValueError(f"the image is {width}x{height}, more than {MAX_ASPECT} times longer than wide; "
                         "crop it to the part you want first")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError("the image file is truncated or damaged; save it again or try another file") from error
    notes = _notes(image)
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        image = ImageOps.exif_transpose(image)
        notes.insert(0, "turned upright as its EXIF orientation says")
    return image, notes


def load_image(source: ImageLike) -> Image.Image:
    """read_image without the notes."""
    return read_image(source)[0]


MASK_ALPHA = 32  # a layer pixel at least this opaque is painted (the page's brush is half transparent)


def read_mask(source: ImageLike) -> np.ndarray:
    """(H, W) bool, True = painted: the painted pixels of an image with transparency (alpha at least
    MASK_ALPHA: translucent brushes count), else the light pixels (white on black). Files go through the
    same checks as read_image."""
    if isinstance(source, np.ndarray) and source.ndim == 2:
        return source > 0
    image = source if isinstance(source, (np.ndarray, Image.Image)) else _open(source)
    if isinstance(image, np.ndarray):
        image = _array_to_pil(image)
    if "A" in image.getbands() and image.getchannel("A").getextrema()[0] < 255:
        return np.asarray(image.getchannel("A")) >= MASK_ALPHA
    return np.asarray(load_image(image).convert("L")) > 127


def _open(source: str | os.PathLike | bytes) -> Image.Image:
    """A file or its bytes, opened lazily (header only), with errors people can act on."""
    if isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise ValueError(f"no image file at {os.fspath(source)!r}")
        data = Path(source).read_bytes()  # read whole, so no file handle stays open
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        raise ValueError(f"cannot read an image from a {type(source).__name__}; pass a PIL image, a numpy array, "
                         "a file path or the file's bytes")
    if not data:
        raise ValueError("the file is empty")
    if data.lstrip()[:5].lower() in (b"<?xml", b"<svg ", b"<svg>"):
        raise ValueError(f"vector images (SVG) are not supported; export it as {FORMATS_HINT} first")
    try:
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise ValueError(f"the image declares far more pixels than the limit of {MAX_PIXELS:,}") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"the file is not an image that can be read ({FORMATS_HINT})") from error


def _notes(image: Image.Image) -> list[str]:
    """What to_rgb will change in this image, said for people."""
    notes = []
    if getattr(image, "n_frames", 1) > 1:
        notes.append(f"animated ({image.n_frames} frames): its first frame is used")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        notes.append("transparency composited on white")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        notes.append("16-bit or deeper: scaled to 8 bits")
    if image.mode in ("L", "LA", "1", "I;16", "I;16B", "I;16L", "I", "F"):
        notes.append("greyscale: used as grey RGB")
    if image.mode == "CMYK":
        notes.append("CMYK: converted to RGB")
    return notes


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


def from_uint8(images_BHWC: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> pixels in [-1, 1] that to_uint8 turns back into exactly the same bytes (each
    value at the centre of its truncation bin), for images that are shown, not encoded."""
    return torch.from_numpy((np.asarray(images_BHWC, np.float32) + 0.5) / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()


def to_pil(pixels_BCHW: torch.Tensor) -> list[Image.Image]:
    """Pixels in [-1, 1] -> a list of RGB PIL images."""
    return [Image.fromarray(array) for array in to_uint8(pixels_BCHW)]


def mask_at(mask_HW: np.ndarray, size: int) -> np.ndarray:
    """(size, size) bool: a mask of any size (nonzero = painted; the max over channels) resized by area, a
    pixel painted when at least half of it is: the region an inpainting takes from its new images."""
    mask_HW = np.asarray(mask_HW)
    if mask_HW.ndim == 3:
        mask_HW = mask_HW.max(axis=-1)
    if mask_HW.ndim != 2 or mask_HW.size == 0:
        raise ValueError(f"a mask must be a non-empty (H, W) array, got shape {mask_HW.shape}")
    return cv2.resize((mask_HW > 0).astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) >= 0.5


PERCEPTIBLE = 24  # a pixel changed perceptibly: by more than this (of 255) in some channel


def feather_width(size: int) -> int:
    """The blend's feather for size-pixel images: 1/32 of the side (2 px at 64 px), at least 1."""
    return max(1, size // 32)


def beyond_feather(region_HW: np.ndarray, feather: int | None = None) -> np.ndarray:
    """(H, W) bool: the pixels farther than the feather from the region, where an edit keeps the source exactly."""
    region_HW = np.asarray(region_HW, bool)
    feather = feather or feather_width(min(region_HW.shape))
    return cv2.distanceTransform((~region_HW).astype(np.uint8), cv2.DIST_L2, 3) > feather


def changed_shares(before_HW3: np.ndarray, after_HW3: np.ndarray, region_HW: np.ndarray) -> tuple[float, float]:
    """(share of the region's pixels changed perceptibly, share of the pixels beyond the feather outside it
    changed at all) between two uint8 images: what an edit did where it was asked to, and elsewhere (0 is
    the promise of blend_outside)."""
    moved_HW = np.abs(after_HW3.astype(np.int16) - before_HW3.astype(np.int16)).max(-1)
    region_HW, beyond_HW = np.asarray(region_HW, bool), beyond_feather(region_HW)
    inside = float((moved_HW[region_HW] > PERCEPTIBLE).mean()) if region_HW.any() else 0.0
    outside = float((moved_HW[beyond_HW] > 0).mean()) if beyond_HW.any() else 0.0
    return inside, outside


def blend_outside(new_HW3: np.ndarray, source_HW3: np.ndarray, region_HW: np.ndarray, feather: int | None = None) -> np.ndarray:
    """`new` inside a region, `source` exactly beyond `feather` pixels outside it, mixed linearly in between (uint8).

    Masked regeneration keeps every latent code outside its freed clusters, but the decoder's receptive
    field carries the change a few pixels across the border; this puts the source's pixels back there.
    feather defaults to 1/32 of the shorter side (2 px at 64 px)."""
    region_HW = np.asarray(region_HW, bool)
    if region_HW.shape != new_HW3.shape[:2] or new_HW3.shape != source_HW3.shape:
        raise ValueError(f"blend needs equal image and region sizes, got {new_HW3.shape}, {source_HW3.shape}, {region_HW.shape}")
    feather = feather or feather_width(min(region_HW.shape))
    distance_HW = cv2.distanceTransform((~region_HW).astype(np.uint8), cv2.DIST_L2, 3)
    weight_HW1 = np.where(distance_HW > feather, 0.0, np.clip(1 - distance_HW / (feather + 1), 0, 1))[..., None]
    return np.round(weight_HW1 * new_HW3 + (1 - weight_HW1) * source_HW3).astype(np.uint8)
