"""The overview figure of the README and of the app's first view, made with the bundled model:
assets/overview.png.

    python docs/make_figures.py [--out assets/overview.png]

Four rows, 64 px images shown at 128 px: every stage of one generated image (structure map over its
canvas), a structure transfer (a held-out reference's structure up to stage 2 used for other classes), a
class swap (stages 0..2 kept, structure only, the rest as another class) and an inpainting (the lower
half of the image regenerated from the default stage, the rest kept). Seeds are fixed; the same command makes the same figure on
the same device type.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from nvg_core.images import to_uint8
from nvg_core.locks import INPAINT_STAGE, Locks
from nvg_core.pipeline import NVGPipeline

ROOT = Path(__file__).resolve().parents[1]
TILE, GAP, LABEL_W = 128, 8, 150


def tiles(images_BHWC: np.ndarray) -> list[Image.Image]:
    return [Image.fromarray(image).resize((TILE, TILE), Image.NEAREST) for image in images_BHWC]


def row(label: str, pictures: list[Image.Image], captions: list[str], width: int) -> Image.Image:
    """A labelled row of tiles, each captioned below."""
    height = max(p.height for p in pictures) + 20
    canvas = Image.new("RGB", (width, height + GAP), "white")
    draw = ImageDraw.Draw(canvas)
    draw.multiline_text((6, 8), label, fill=(40, 40, 40), spacing=3)
    x = LABEL_W
    for picture, caption in zip(pictures, captions):
        canvas.paste(picture, (x, 0))
        draw.text((x + 2, picture.height + 3), caption, fill=(70, 70, 70))
        x += picture.width + GAP
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "assets/overview.png")
    args = parser.parse_args()
    pipe = NVGPipeline.from_pretrained(device="cpu")
    width = LABEL_W + pipe.num_stages * (TILE // 2 + GAP) + 40

    source = pipe.generate(["smiley"], seeds=[42])
    stages = []
    for s in range(pipe.num_stages):  # the map above the canvas after the stage, as the app's strip shows them
        structure_map, _, canvas = pipe.stage_view(source, 0, s, size=TILE // 2)
        stages.append(Image.fromarray(np.concatenate([np.asarray(structure_map), np.asarray(canvas)], 0)))
    rows = [row("stages 0..8 of one image\n(structure map over\ncanvas)", stages,
                [f"stage {s}" for s in range(pipe.num_stages)], width)]

    reference = Image.open(ROOT / "assets/examples/reference_heart.png").convert("RGB")
    maps = pipe.extract_structure(reference)
    targets = ["smiley", "flower", "fruit", "sea_animal"]
    transfer = pipe.generate(targets, seeds=[7] * len(targets), locks=Locks.from_structure(
        np.repeat(maps[None, :3], len(targets), 0)))
    rows.append(row("structure transfer:\na reference's stages\n0..2, other classes",
                    [reference.resize((TILE, TILE), Image.LANCZOS), *tiles(to_uint8(transfer.images))],
                    ["reference", *targets], width))

    swap_classes = ["creature_face", "flower", "fruit"]
    swaps = [pipe.regenerate(source, from_stage=3, keep_content=False, class_labels=c, seeds=[3]) for c in swap_classes]
    rows.append(row("class swap: stages 0..2\nkept (structure only),\nthe rest another class",
                    tiles(to_uint8(source.images)) + [tiles(to_uint8(s.images))[0] for s in swaps],
                    ["smiley, seed 42", *swap_classes], width))

    mask_HW = np.zeros((64, 64), bool)
    mask_HW[36:, :] = True
    edits = pipe.regenerate(source, from_stage=INPAINT_STAGE, mask=mask_HW, num_variations=3, seeds=[11, 12, 13])
    painted = to_uint8(source.images)[0].copy()
    painted[mask_HW] = (0.5 * painted[mask_HW] + 0.5 * np.array([255, 0, 255])).astype(np.uint8)
    rows.append(row(f"inpainting: the lower\nhalf regenerated from\nstage {INPAINT_STAGE}, the rest kept",
                    tiles(painted[None]) + tiles(to_uint8(edits.images)), ["mask", "seed 11", "seed 12", "seed 13"],
                    width))

    figure = Image.new("RGB", (width, sum(r.height for r in rows)), "white")
    y = 0
    for r in rows:
        figure.paste(r, (0, y))
        y += r.height
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out, optimize=True)
    print(f"saved {args.out} ({figure.width}x{figure.height})")


if __name__ == "__main__":
    main()
