"""The emoji-32 dataset: the same Unicode emoji drawn in nine art styles, from pinned npm packages.

`python -m nvg_core.data.emoji --size 64 --out data/emoji64.npz` (or `nvg data emoji ...`) runs `npm pack`
for the packages below, renders every icon (Iconify SVGs with resvg-py, the 3D set's WebP files with
Pillow), normalises it (crop to the alpha bounding box, fit the longer side into size * (1 - 2/16) with
Lanczos, centre, composite on white) and writes one .npz with images, class labels (-1 outside the 32
classes), emoji codepoints, styles, names and the class list. Skin tones and the Component category are
left out. Licences and attributions: DATA_LICENSES.md.

The reference build (Pillow 13.0.0, resvg-py 0.5.0) has 12,162 images and, at 64 px, a known sha256 of the
image bytes. Other Pillow versions give a few slightly different pixels (Pillow 12.3.0: 89 images, at most
19 levels apart); such a mismatch is reported on stderr and the file is still written.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections import Counter
from dataclasses import dataclass
from importlib import metadata
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

PACKAGES = {  # style -> npm package (emoji-datasource holds the metadata)
    "meta": "emoji-datasource@16.0.0",
    "noto": "@iconify-json/noto@1.2.9",
    "twemoji": "@iconify-json/twemoji@1.2.5",
    "fluent3d": "@lobehub/fluent-emoji-3d@1.1.0",
    "fluent_color": "@iconify-json/fluent-emoji@1.2.7",
    "fluent_flat": "@iconify-json/fluent-emoji-flat@1.2.6",
    "noto_v1": "@iconify-json/noto-v1@1.2.5",
    "emojione": "@iconify-json/emojione@1.2.3",
    "fxemoji": "@iconify-json/fxemoji@1.2.2",
    "streamline": "@iconify-json/streamline-emojis@1.2.4",
}
STYLES = ("noto", "twemoji", "fluent3d", "fluent_color", "fluent_flat", "noto_v1", "emojione", "fxemoji", "streamline")
EXPECTED_COUNT = 12_162
EXPECTED_SHA256 = {64: "327e097612d3b655198f8e4a0412919454e931b7e785bb1613e87025f9e1c0d9"}  # by image size
REFERENCE_VERSIONS = {"Pillow": "13.0.0", "resvg-py": "0.5.0"}

CLASS_SUBCATEGORIES: dict[str, tuple[str, ...]] = {
    "smiley": ("face-smiling", "face-affection", "face-tongue", "face-hand", "face-neutral-skeptical", "face-sleepy",
               "face-unwell", "face-hat", "face-glasses", "face-concerned", "face-negative"),
    "creature_face": ("face-costume", "cat-face", "monkey-face"),
    "heart": ("heart",),
    "hand": ("hand-fingers-open", "hand-fingers-partial", "hand-single-finger", "hand-fingers-closed", "hands",
             "hand-prop"),
    "mammal": ("animal-mammal",),
    "bird": ("animal-bird",),
    "sea_animal": ("animal-marine",),
    "bug": ("animal-bug",),
    "flower": ("plant-flower",),
    "plant": ("plant-other",),
    "fruit": ("food-fruit",),
    "vegetable": ("food-vegetable",),
    "meal": ("food-prepared", "food-asian"),
    "sweet": ("food-sweet",),
    "drink": ("drink", "dishware"),
    "building": ("place-building", "place-religious", "hotel"),
    "weather_sky": ("sky & weather",),
    "clock": ("time",),
    "road_vehicle": ("transport-ground",),
    "aircraft": ("transport-air",),
    "celebration": ("event",),
    "sport": ("sport", "award-medal"),
    "game": ("game",),
    "clothing": ("clothing",),
    "music": ("musical-instrument", "music"),
    "electronics": ("computer", "phone"),
    "tool": ("tool",),
    "flag": ("country-flag", "flag", "subdivision-flag"),
    "zodiac": ("zodiac",),
    "arrow": ("arrow",),
    "shape": ("geometric",),
    "sign": ("warning", "transport-sign"),
}
CLASSES: tuple[str, ...] = tuple(CLASS_SUBCATEGORIES)
CLASS_OF_SUBCATEGORY: dict[str, int] = {sub: i for i, subs in enumerate(CLASS_SUBCATEGORIES.values()) for sub in subs}
NO_FLIP_CLASSES = ("arrow", "clock", "sign", "zodiac", "flag")  # direction matters: no horizontal flips


# --------------------------------------------------------------------------------------------------
# Rendering and normalisation
# --------------------------------------------------------------------------------------------------


def normalise(rgba: Image.Image, size: int) -> np.ndarray:
    """Crop to the alpha bounding box (alpha > 8), fit into size * (1 - 2/16), centre, composite on white.

    Returns a (size, size, 3) uint8 array.
    """
    rgba = rgba.convert("RGBA")
    box = Image.fromarray((np.asarray(rgba)[:, :, 3] > 8).astype(np.uint8) * 255).getbbox()
    if box is None:
        raise ValueError("the icon is fully transparent")
    rgba = rgba.crop(box)
    scale = size * (1 - 2 / 16) / max(rgba.size)
    width, height = max(1, round(rgba.width * scale)), max(1, round(rgba.height * scale))
    rgba = rgba.resize((width, height), Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", (size, size), (255, 255, 255, 0))
    canvas.paste(rgba, ((size - width) // 2, (size - height) // 2))
    white = Image.new("RGBA", (size, size), (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, canvas).convert("RGB"))


def _render(job: tuple[str, str, int]) -> np.ndarray:
    """Render and normalise one job: ("svg", markup, size) or ("webp", path, size)."""
    kind, source, size = job
    if kind == "svg":
        import resvg_py  # only the data builder needs it

        side = max(2 * size, 128)
        image = Image.open(io.BytesIO(bytes(resvg_py.svg_to_bytes(svg_string=source, width=side, height=side))))
    else:
        image = Image.open(source)
    return normalise(image, size)


# --------------------------------------------------------------------------------------------------
# Matching emoji to icons
# --------------------------------------------------------------------------------------------------


def normalise_codepoint(code: str) -> str:
    """'0023-FE0F-20E3' -> '23-20e3': lower case, no leading zeros, no FE0F."""
    return "-".join(p.lstrip("0") or "0" for p in code.lower().split("-") if p != "fe0f")


class IconSet:
    """One Iconify JSON set: icon bodies, aliases and (where the set has chars.json) codepoint -> slug."""

    def __init__(self, folder: Path) -> None:
        data = json.loads((folder / "icons.json").read_text())
        self.icons, self.aliases = data["icons"], data.get("aliases", {})
        self.width, self.height = data.get("width", 16), data.get("height", 16)
        chars = json.loads((folder / "chars.json").read_text()) if (folder / "chars.json").is_file() else {}
        self.chars = {normalise_codepoint(k): v for k, v in chars.items()}

    def __contains__(self, slug: str) -> bool:
        return slug in self.icons or slug in self.aliases

    def svg(self, slug: str) -> str:
        """SVG markup of an icon, following aliases (at most 5 hops) to the icon that has a body."""
        name = slug
        for _ in range(6):
            if name in self.icons:
                icon = self.icons[name]
                left, top = icon.get("left", 0), icon.get("top", 0)
                width, height = icon.get("width", self.width), icon.get("height", self.height)
                return (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
                        f'viewBox="{left} {top} {width} {height}">{icon["body"]}</svg>')
            name = self.aliases[name]["parent"]
        raise ValueError(f"alias chain too long for {slug}")


def _slugs(style: str, sets: dict[str, IconSet], code: str, name: str) -> list[str]:
    """The icons of `style` for one emoji (codepoint already normalised).

    Candidates in order: the set's own chars.json slug, then the slugs twemoji, noto and fluent_flat give
    the codepoint (fxemoji: the Unicode name in lower-case alphanumerics). Streamline also has numbered
    variants (slug-1, -2, -3), all taken.
    """
    icon_set = sets[style]
    if style == "fxemoji":
        candidates = [re.sub(r"[^a-z0-9]", "", name.lower())]
    else:
        candidates = [sets[s].chars.get(code) for s in (style, "twemoji", "noto", "fluent_flat")]
    for slug in filter(None, candidates):
        variants = (slug, f"{slug}-1", f"{slug}-2", f"{slug}-3") if style == "streamline" else (slug,)
        found = [v for v in variants if v in icon_set]
        if found:
            return found
    return []


# --------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------


def fetch_packages(workdir: Path) -> dict[str, Path]:
    """`npm pack` every pinned package into workdir (skipping tarballs already there) and unpack it.

    Returns style -> the unpacked package folder.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    folders = {}
    for style, spec in PACKAGES.items():
        stem = spec.lstrip("@").replace("/", "-").replace("@", "-")
        tarball, folder = workdir / f"{stem}.tgz", workdir / stem
        if not tarball.is_file():
            print(f"npm pack {spec}", file=sys.stderr)
            try:
                subprocess.run(["npm", "pack", "--silent", spec], cwd=workdir, check=True, stdout=subprocess.DEVNULL)
            except FileNotFoundError:
                message = "npm not found: the dataset is fetched with `npm pack` (install Node.js)"
                raise FileNotFoundError(message) from None
        if not folder.is_dir():  # unpack beside it, then rename, so an interrupted run leaves no half folder
            partial = workdir / f"{stem}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            with tarfile.open(tarball) as archive:
                archive.extractall(partial, filter="data")
            partial.rename(folder)
        folders[style] = folder / "package"
    return folders


def _jobs(folders: dict[str, Path], size: int) -> tuple[list[tuple[str, str, int]], list[tuple[int, str, str, str]]]:
    """Render jobs and (label, unified, style, name) rows in the stable order: emoji.json, then STYLES."""
    sets = {style: IconSet(folders[style]) for style in STYLES if style != "fluent3d"}
    jobs, rows = [], []
    for entry in json.loads((folders["meta"] / "emoji.json").read_text()):
        if entry["category"] == "Component":
            continue
        code = normalise_codepoint(entry["unified"])
        for style in STYLES:
            if style == "fluent3d":
                path = folders["fluent3d"] / "assets" / Path(entry["image"]).with_suffix(".webp").name
                found = [("webp", str(path))] if path.is_file() else []
            else:
                found = [("svg", sets[style].svg(slug)) for slug in _slugs(style, sets, code, entry["name"])]
            for kind, source in found:
                jobs.append((kind, source, size))
                label = CLASS_OF_SUBCATEGORY.get(entry["subcategory"], -1)
                rows.append((label, entry["unified"], style, entry["name"]))
    return jobs, rows


def _versions() -> dict[str, str]:
    """Installed versions of the packages that decide the pixels."""
    versions = {}
    for package in REFERENCE_VERSIONS:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def reference_mismatch(count: int, sha256: str, size: int, per_style: dict[str, int],
                       versions: dict[str, str]) -> str | None:
    """A message saying how a build differs from the reference build, or None when it matches.

    The hash is only known at 64 px; at other sizes only the count is checked.
    """
    expected = EXPECTED_SHA256.get(size)
    if count == EXPECTED_COUNT and expected in (None, sha256):
        return None
    return (f"warning: this emoji dataset differs from the reference build.\n"
            f"  images: {count} (reference {EXPECTED_COUNT})\n"
            f"  sha256: {sha256}\n"
            f"  reference sha256 at {size} px: {expected or 'not known'}\n"
            f"  per style: {per_style}\n"
            f"  versions here: {versions}; reference: {REFERENCE_VERSIONS}\n"
            f"  The file is still written. Same count, other hash: usually another Pillow version (a few pixels\n"
            f"  differ). Other count: the packages or the icon matching differ.")


def build_emoji_dataset(out_path: str | Path, size: int = 64, workdir: str | Path | None = None,
                        workers: int = 2) -> dict:
    """Fetch, render and normalise the dataset; write it to out_path (.npz) and return a summary.

    The npm tarballs go to workdir (default: out_path's folder / "npm") and are reused on later runs.
    The file is written to a temporary name, then renamed. A count or hash that differs from the
    reference build is reported on stderr with both values (summary["matches_reference"] is False);
    the file is still written. Progress goes to stderr.
    """
    try:
        import resvg_py  # noqa: F401  (checked here so the error is clear, used in the worker processes)
    except ImportError:
        raise ImportError("building the emoji dataset needs resvg-py: pip install resvg-py==0.5.0") from None
    start = time.perf_counter()
    out_path = Path(out_path)
    folders = fetch_packages(Path(workdir) if workdir else out_path.parent / "npm")
    jobs, rows = _jobs(folders, size)
    print(f"rendering {len(jobs)} images at {size} px with {workers} processes", file=sys.stderr)
    images = np.empty((len(jobs), size, size, 3), np.uint8)
    with Pool(workers) as pool:
        for i, image in enumerate(pool.imap(_render, jobs, chunksize=64)):
            images[i] = image
            if (i + 1) % 2000 == 0 or i + 1 == len(jobs):
                print(f"  {i + 1}/{len(jobs)} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    label, codes, styles, names = (np.array(column) for column in zip(*rows))
    summary = {"path": str(out_path), "size": size, "count": len(images),
               "sha256": hashlib.sha256(images.tobytes()).hexdigest(),
               "per_style": dict(Counter(styles.tolist())), "labelled": int((label >= 0).sum()),
               "versions": _versions()}
    message = reference_mismatch(summary["count"], summary["sha256"], size, summary["per_style"], summary["versions"])
    summary["matches_reference"] = message is None
    if message:
        print(message, file=sys.stderr)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(f".{out_path.name}.partial.npz")
    np.savez_compressed(partial, images=images, label=label.astype(np.int16), emoji=codes, style=styles,
                        name=names, classes=np.array(CLASSES))
    partial.replace(out_path)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    print(f"wrote {out_path} in {summary['seconds']} s", file=sys.stderr)
    return summary


# --------------------------------------------------------------------------------------------------
# Loading and splitting
# --------------------------------------------------------------------------------------------------


@dataclass
class EmojiDataset:
    """A built dataset; arrays index the same N images."""

    images: np.ndarray  # (N, H, W, 3) uint8
    label: np.ndarray  # (N,) int16 class index into `classes`, -1 outside the 32 classes
    emoji: np.ndarray  # (N,) unified codepoint, e.g. "1F600"
    style: np.ndarray  # (N,) style name, one of STYLES
    name: np.ndarray  # (N,) emoji name
    classes: tuple[str, ...]


def load_emoji_dataset(path: str | Path) -> EmojiDataset:
    """Load a built dataset (each .npz array is decompressed once)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no dataset at {path}; build it with `nvg data emoji --size 64 --out {path}`")
    with np.load(path) as data:
        arrays = {key: data[key] for key in ("images", "label", "emoji", "style", "name", "classes")}
    return EmojiDataset(**{**arrays, "classes": tuple(arrays["classes"].tolist())})


def _unit_hash(seed: int, emoji_id: str) -> float:
    """A stable number in [0, 1) for one emoji."""
    return int(hashlib.sha256(f"{seed}:{emoji_id}".encode()).hexdigest()[:8], 16) / 2**32


def split_by_emoji(emoji_ids: np.ndarray, held_out_fraction: float = 0.1, seed: int = 0,
                   labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split by emoji, so all styles of one emoji land on the same side.

    An emoji is held out when a hash of (seed, codepoint) is below held_out_fraction, so its side does
    not depend on the other emoji in the set. With `labels` (class per image, -1 for none), every class
    of two or more emoji that got no held-out emoji that way also holds out its emoji with the lowest
    hash, so every class is tested. Returns (train_indices, held_out_indices) into emoji_ids.
    """
    unique, inverse = np.unique(np.asarray(emoji_ids), return_inverse=True)
    score = np.array([_unit_hash(seed, u) for u in unique.tolist()])
    held = score < held_out_fraction
    if labels is not None:
        emoji_label = np.full(len(unique), -1)
        emoji_label[inverse] = np.asarray(labels)
        for c in np.unique(emoji_label[emoji_label >= 0]):
            members = np.flatnonzero(emoji_label == c)
            if len(members) > 1 and not held[members].any():
                held[members[np.argmin(score[members])]] = True
    mask = held[inverse]
    return np.flatnonzero(~mask), np.flatnonzero(mask)


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The build options, for `python -m nvg_core.data.emoji` and the `nvg data emoji` subcommand."""
    parser.add_argument("--size", type=int, default=64, help="image size in pixels (64 for the bundled model)")
    parser.add_argument("--out", type=Path, required=True, help="output .npz path")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the npm tarballs go and are reused (default: the output's folder / npm)")
    parser.add_argument("--workers", type=int, default=2, help="rendering processes (default 2)")


def run(args: argparse.Namespace) -> None:
    """Build the dataset from parsed arguments and print its summary (JSON) on stdout."""
    print(json.dumps(build_emoji_dataset(args.out, args.size, args.workdir, args.workers), indent=1))


def main(argv: list[str] | None = None) -> int:
    """`python -m nvg_core.data.emoji --size 64 --out data/emoji64.npz`."""
    parser = argparse.ArgumentParser(description="Build the emoji-32 dataset from pinned npm packages.")
    add_arguments(parser)
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
