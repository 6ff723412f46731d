"""The emoji-32 dataset: the same Unicode emoji drawn in nine art styles, from pinned npm packages.

`nvg data emoji --size 64 --out data/emoji64.npz` runs `npm pack` for the packages below, renders every
icon, normalises it (crop to the alpha bounding box, fit the longer side into size * (1 - 2/16) with
Lanczos, centre, composite on white) and writes one .npz with images, class labels (-1 outside the 32
classes), emoji codepoints, styles and names. Licences and attributions: DATA_LICENSES.md.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
from collections import Counter
from dataclasses import dataclass
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
EXPECTED_SHA256_64 = "327e097612d3b655198f8e4a0412919454e931b7e785bb1613e87025f9e1c0d9"

CLASS_SUBCATEGORIES: dict[str, tuple[str, ...]] = {
    "smiley": ("face-smiling", "face-affection", "face-tongue", "face-hand", "face-neutral-skeptical", "face-sleepy",
               "face-unwell", "face-hat", "face-glasses", "face-concerned", "face-negative"),
    "creature_face": ("face-costume", "cat-face", "monkey-face"),
    "heart": ("heart",),
    "hand": ("hand-fingers-open", "hand-fingers-partial", "hand-single-finger", "hand-fingers-closed", "hands", "hand-prop"),
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
CLASS_OF_SUBCATEGORY = {sub: i for i, subs in enumerate(CLASS_SUBCATEGORIES.values()) for sub in subs}
NO_FLIP_CLASSES = ("arrow", "clock", "sign", "zodiac", "flag")  # direction matters: no horizontal flips


# --------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------


def normalise(rgba: Image.Image, size: int) -> np.ndarray:
    """Crop to the alpha bounding box (alpha > 8), fit into size * (1 - 2/16), centre, composite on white."""
    rgba = rgba.convert("RGBA")
    box = Image.fromarray((np.asarray(rgba)[:, :, 3] > 8).astype(np.uint8) * 255).getbbox()
    if box is None:
        raise ValueError("the icon is fully transparent")
    rgba = rgba.crop(box)
    fit = size * (1 - 2 / 16)
    scale = fit / max(rgba.size)
    width, height = max(1, round(rgba.width * scale)), max(1, round(rgba.height * scale))
    rgba = rgba.resize((width, height), Image.LANCZOS)
    canvas = Image.new("RGBA", (size, size), (255, 255, 255, 0))
    canvas.paste(rgba, ((size - width) // 2, (size - height) // 2))
    return np.asarray(Image.alpha_composite(Image.new("RGBA", (size, size), (255, 255, 255, 255)), canvas).convert("RGB"))


def _render(job: tuple[str, str, int]) -> np.ndarray:
    """Render one job: ("svg", markup, size) or ("webp", path, size)."""
    kind, source, size = job
    if kind == "svg":
        import resvg_py  # only the data builder needs it
        png = resvg_py.svg_to_bytes(svg_string=source, width=max(2 * size, 128), height=max(2 * size, 128))
        image = Image.open(io.BytesIO(bytes(png)))
    else:
        image = Image.open(source)
    return normalise(image, size)


# --------------------------------------------------------------------------------------------------
# Matching emoji to icons
# --------------------------------------------------------------------------------------------------


def normalise_codepoint(code: str) -> str:
    """'0023-FE0F-20E3' -> '23-20e3': lower case, no leading zeros, no FE0F."""
    parts = [p.lstrip("0") or "0" for p in code.lower().split("-") if p.lower() != "fe0f"]
    return "-".join(parts)


class IconSet:
    """One Iconify JSON set: icon bodies, aliases and (optionally) a codepoint -> slug map."""

    def __init__(self, folder: Path):
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
        candidates = [sets[s].chars.get(code) for s in (style, "twemoji", "noto", "fluent_flat") if s in sets]
    for slug in filter(None, candidates):
        variants = (slug, f"{slug}-1", f"{slug}-2", f"{slug}-3") if style == "streamline" else (slug,)
        found = [v for v in variants if v in icon_set]
        if found:
            return found
    return []


# --------------------------------------------------------------------------------------------------
# Building and loading
# --------------------------------------------------------------------------------------------------


def fetch_packages(workdir: Path) -> dict[str, Path]:
    """`npm pack` every pinned package into workdir (once) and unpack it; returns style -> package folder."""
    workdir.mkdir(parents=True, exist_ok=True)
    folders = {}
    for style, spec in PACKAGES.items():
        stem = spec.lstrip("@").replace("/", "-").replace("@", "-")
        tarball, folder = workdir / f"{stem}.tgz", workdir / stem
        if not tarball.is_file():
            print(f"npm pack {spec}", file=sys.stderr)
            subprocess.run(["npm", "pack", "--silent", spec], cwd=workdir, check=True, stdout=subprocess.DEVNULL)
        if not folder.is_dir():
            with tarfile.open(tarball) as archive:
                archive.extractall(folder, filter="data")
        folders[style] = folder / "package"
    return folders


def build_emoji_dataset(out_path: str | Path, size: int = 64, workdir: str | Path | None = None) -> dict:
    """Build the dataset .npz (written to a temporary file, then renamed) and return a summary.

    A count or hash that differs from the reference build (other Pillow or resvg versions) is reported
    on stderr with both values; the file is still written.
    """
    out_path = Path(out_path)
    folders = fetch_packages(Path(workdir) if workdir else out_path.parent / "npm")
    sets = {style: IconSet(folders[style]) for style in STYLES if style != "fluent3d"}
    emoji = json.loads((folders["meta"] / "emoji.json").read_text())
    jobs, meta = [], []
    for entry in emoji:
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
                meta.append((CLASS_OF_SUBCATEGORY.get(entry["subcategory"], -1), entry["unified"], style, entry["name"]))
    print(f"rendering {len(jobs)} images at {size} px", file=sys.stderr)
    with Pool(2) as pool:
        images = np.stack(pool.map(_render, jobs, chunksize=64))
    label, codes, styles, names = (np.array(column) for column in zip(*meta))
    sha256 = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()
    summary = {"count": len(images), "sha256": sha256, "per_style": dict(Counter(styles.tolist())),
               "labelled": int((label >= 0).sum())}
    expected = EXPECTED_SHA256_64 if size == 64 else None
    if len(images) != EXPECTED_COUNT or (expected and sha256 != expected):
        print(f"warning: this build differs from the reference: {len(images)} images (expected {EXPECTED_COUNT}), "
              f"sha256 {sha256} (expected {expected or 'n/a at this size'}); per style {summary['per_style']}",
              file=sys.stderr)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.partial.npz")
    np.savez_compressed(tmp, images=images, label=label.astype(np.int16), emoji=codes, style=styles, name=names,
                        classes=np.array(CLASSES))
    tmp.replace(out_path)
    return summary


@dataclass
class EmojiDataset:
    images: np.ndarray  # (N, H, W, 3) uint8
    label: np.ndarray  # (N,) int16 class index, -1 outside the 32 classes
    emoji: np.ndarray  # (N,) unified codepoint
    style: np.ndarray  # (N,) style name
    name: np.ndarray  # (N,) emoji name
    classes: tuple[str, ...]


def load_emoji_dataset(path: str | Path) -> EmojiDataset:
    """Load a built dataset (each array read once)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no dataset at {path}; build it with `nvg data emoji --size 64 --out {path}`")
    with np.load(path) as data:
        arrays = {key: data[key] for key in ("images", "label", "emoji", "style", "name", "classes")}
    return EmojiDataset(**{**arrays, "classes": tuple(arrays["classes"].tolist())})


def split_by_emoji(emoji_ids: np.ndarray, held_out_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split by emoji, so all styles of one emoji land on the same side.

    Returns (train_indices, held_out_indices) into emoji_ids.
    """
    unique = np.unique(emoji_ids)
    digests = np.array([int(hashlib.sha256(f"{seed}:{u}".encode()).hexdigest()[:8], 16) for u in unique]) / 2**32
    held = set(unique[digests < held_out_fraction].tolist())
    mask = np.array([e in held for e in emoji_ids])
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=64, help="image size in pixels (64 for the bundled model)")
    parser.add_argument("--out", type=Path, required=True, help="output .npz path")
    parser.add_argument("--workdir", type=Path, default=None, help="where npm tarballs go (default: beside --out)")


def run(args) -> None:
    summary = build_emoji_dataset(args.out, args.size, args.workdir)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main_parser = argparse.ArgumentParser(description="Build the emoji-32 dataset.")
    add_arguments(main_parser)
    run(main_parser.parse_args())
