"""Your own images as a dataset: `nvg data folder DIR --size 64 --out DATASET`.

A folder in the usual convention: one subfolder per class (the folder names are the class names, sorted),
or a flat folder of images, which is one class named after the folder. Every file is read as the app reads
an upload (nvg_core.images: EXIF orientation, transparency on white, 16-bit scaled, CMYK converted, first
frame of an animation), then centre-cropped or padded on white to a square and resized to `size`.

The dataset is a folder written one image at a time, so a large source never sits in memory at once:
- images.npy: uint8 (N, size, size, 3), read back memory-mapped (load_folder_dataset);
- labels.npy: int16 (N,) class index; index.json: the class names, each image's source path (relative to
  DIR) and content hash, and what was skipped and why (unreadable, too small, a duplicate by content).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..images import read_image, resize_center_crop, to_rgb

SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
FITS = ("crop", "pad")


@dataclass
class FolderDataset:
    """A built folder dataset; images is memory-mapped."""

    images: np.ndarray  # (N, H, W, 3) uint8
    label: np.ndarray  # (N,) int16 index into classes
    classes: tuple[str, ...]
    paths: list[str]  # source file of each image, relative to the source folder


def _sources(folder: Path) -> tuple[list[str], list[tuple[Path, int]], list[dict]]:
    """(class names, [(file, class index)], skipped entries): subfolders are classes; a flat folder is one."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder at {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        return [folder.resolve().name], [(p, 0) for p in files], []
    skipped = [{"path": p.name, "why": "not in a class subfolder"} for p in files]
    pairs = [(p, c) for c, sub in enumerate(subfolders) for p in sorted(sub.rglob("*"))
             if p.is_file() and not p.name.startswith(".")]
    return [sub.name for sub in subfolders], pairs, skipped


def _square(image: Image.Image, size: int, fit: str) -> np.ndarray:
    """RGB, centre-cropped (or padded on white) to a square, resized to size x size with Lanczos."""
    image = to_rgb(image)
    if fit == "crop":  # the rule every model input follows (nvg_core.images)
        return np.asarray(resize_center_crop(image, size), dtype=np.uint8)
    return np.asarray(ImageOps.pad(image, (size, size), Image.LANCZOS, color=(255, 255, 255)), dtype=np.uint8)


def build_folder_dataset(source: str | Path, out: str | Path, size: int = 64, fit: str = "crop",
                         min_side: int | None = None) -> dict:
    """Read every image of `source` into a dataset folder `out` (see the module docstring); returns the summary.

    Skipped, with the reason recorded: files that are not images or cannot be read (the reading rule's own
    message), images whose shorter side is under min_side (default size // 2), and files whose bytes
    repeat an earlier file's."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    source, out = Path(source), Path(out)
    min_side = size // 2 if min_side is None else min_side
    classes, pairs, skipped = _sources(source)
    if not pairs:
        raise ValueError(f"no files in {source}" + (" or its class subfolders" if skipped else ""))
    out.mkdir(parents=True, exist_ok=True)
    images = np.lib.format.open_memmap(out / "images.npy", mode="w+", dtype=np.uint8, shape=(len(pairs), size, size, 3))
    labels, kept, seen = [], [], {}
    for path, label in pairs:
        relative = path.relative_to(source).as_posix()
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            skipped.append({"path": relative, "why": f"the same bytes as {seen[digest]}"})
            continue
        if path.suffix.lower() not in SUFFIXES:
            skipped.append({"path": relative, "why": f"not an image file name ({path.suffix or 'no suffix'})"})
            continue
        try:
            image, _ = read_image(data)
        except ValueError as error:
            skipped.append({"path": relative, "why": str(error)})
            continue
        if min(image.size) < min_side:
            skipped.append({"path": relative, "why": f"too small ({image.width}x{image.height}; at least {min_side} a side)"})
            continue
        seen[digest] = relative
        images[len(kept)] = _square(image, size, fit)
        labels.append(label)
        kept.append({"path": relative, "sha256": digest})
    images.flush()
    del images
    if not kept:
        raise ValueError(f"none of the {len(pairs)} files in {source} could be used; first reason: {skipped[-1]['why']}")
    _truncate(out / "images.npy", len(kept))
    np.save(out / "labels.npy", np.asarray(labels, dtype=np.int16))
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes)).tolist()
    summary = {"source": str(source), "size": size, "fit": fit, "images": len(kept), "classes": classes,
               "per_class": dict(zip(classes, counts)), "skipped": skipped}
    (out / "index.json").write_text(json.dumps({**summary, "files": kept}, indent=1))
    return summary


def _truncate(path: Path, count: int, chunk: int = 1024) -> None:
    """Keep the first `count` images of images.npy (skipped files left unused rows at its end), copying in
    chunks into a file of the right shape."""
    full = np.load(path, mmap_mode="r")
    if len(full) == count:
        return
    staging = path.with_name(".images.npy.partial")
    kept = np.lib.format.open_memmap(staging, mode="w+", dtype=np.uint8, shape=(count, *full.shape[1:]))
    for start in range(0, count, chunk):
        stop = min(start + chunk, count)
        kept[start:stop] = full[start:stop]
    kept.flush()
    del kept, full
    staging.replace(path)


def load_folder_dataset(path: str | Path) -> FolderDataset:
    """A dataset built by build_folder_dataset, its images memory-mapped (not read into memory)."""
    path = Path(path)
    if not (path / "index.json").is_file():
        raise FileNotFoundError(f"no folder dataset at {path}; build it with `nvg data folder DIR --out {path}`")
    index = json.loads((path / "index.json").read_text())
    return FolderDataset(np.load(path / "images.npy", mmap_mode="r"), np.load(path / "labels.npy"),
                         tuple(index["classes"]), [f["path"] for f in index["files"]])


def run(args: argparse.Namespace) -> None:
    """`nvg data folder`: build, then print the summary (JSON) on stdout."""
    summary = build_folder_dataset(args.folder, args.out, args.size, args.fit, args.min_side)
    print(json.dumps(summary, indent=1))
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} files (reasons above)", file=sys.stderr)
