"""How well outline sketches become the layouts people mean: everyday drawings, projected at stages 1-3.

Usage: python bench/bench_sketches.py [--out DIR]

Each sketch is drawn at 512 px with anti-aliased dark strokes of 3, 6 and 12 px (the input) beside the
filled region map it means (the truth). nvg_core.sketch reads the drawing in outline mode and projects
it onto the balanced tree of each stage; the printed agreement is the share of grid cells whose cluster's
majority intended region is their own (cluster purity against the truth, the measure Projection.agreement
uses against the extracted regions), beside its ceiling: the most any balanced tree of that stage can
reach for the truth (a region smaller than the stage's clusters cannot own one). --out saves each drawing and its stage-3 projection as PNGs.
"""

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from nvg_core.sketch import project_sketch, sketch_regions
from nvg_core.structure import _to_grid, agreement, agreement_ceiling, render_map

SIZE = 512
INK = (30, 30, 30)


def _blob_points(gap_degrees: float = 0.0) -> np.ndarray:
    """A hand-drawn-looking closed curve (radius wobbling with the angle), optionally with a gap."""
    theta = np.radians(np.linspace(gap_degrees / 2, 360 - gap_degrees / 2, 200))
    radius = 150 + 25 * np.sin(3 * theta) + 12 * np.cos(5 * theta + 1)
    return np.stack([256 + radius * np.cos(theta), 250 + radius * np.sin(theta)], 1).astype(np.int32)


def everyday_sketches(width: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (drawing (H, W, 3) uint8, truth (H, W) region ids)."""
    out = {}

    def canvas():
        return np.full((SIZE, SIZE, 3), 255, np.uint8), np.zeros((SIZE, SIZE), np.int32)

    drawing, truth = canvas()
    cv2.circle(drawing, (256, 256), 150, INK, width, cv2.LINE_AA)
    cv2.circle(truth, (256, 256), 150, 1, -1)
    out["outline circle"] = (drawing, truth)

    drawing, truth = canvas()
    cv2.line(drawing, (0, 310), (SIZE, 300), INK, width, cv2.LINE_AA)
    cv2.fillPoly(truth, [np.array([[0, 310], [SIZE, 300], [SIZE, SIZE], [0, SIZE]])], 1)
    out["horizon line"] = (drawing, truth)

    drawing, truth = canvas()
    cv2.circle(drawing, (256, 256), 190, INK, width, cv2.LINE_AA)
    cv2.circle(truth, (256, 256), 190, 1, -1)
    for number, x in enumerate((190, 322), start=2):
        cv2.circle(drawing, (x, 210), 34, INK, width, cv2.LINE_AA)
        cv2.circle(truth, (x, 210), 34, number, -1)
    out["face outline with eyes"] = (drawing, truth)

    drawing, truth = canvas()
    house = np.array([[120, 440], [120, 240], [256, 110], [392, 240], [392, 440]])
    cv2.polylines(drawing, [house], True, INK, width, cv2.LINE_AA)
    cv2.fillPoly(truth, [house], 1)
    out["house outline"] = (drawing, truth)

    drawing, truth = canvas()
    for number, (x0, y0, x1, y1) in enumerate([(40, 60, 220, 220), (290, 60, 470, 220), (120, 300, 400, 470)], start=1):
        cv2.rectangle(drawing, (x0, y0), (x1, y1), INK, width, cv2.LINE_AA)
        cv2.rectangle(truth, (x0, y0), (x1, y1), number, -1)
    out["three boxes"] = (drawing, truth)

    drawing, truth = canvas()
    cv2.polylines(drawing, [_blob_points(gap_degrees=3)], False, INK, width, cv2.LINE_AA)  # an 8 px gap
    cv2.fillPoly(truth, [_blob_points()], 1)
    out["blob with a gap"] = (drawing, truth)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="save the drawings and their projections here")
    args = parser.parse_args()
    widths = (3, 6, 12)
    print(f"outline sketches at {SIZE} px; agreement with the intended layout at stages 1 / 2 / 3, per stroke width")
    for name, (_, truth) in everyday_sketches(3).items():
        ceilings = [agreement_ceiling(_to_grid(truth, 16), s) for s in (1, 2, 3)]
        row = ["ceiling " + " / ".join(f"{x:.2f}" for x in ceilings)]
        for width in widths:
            drawing, truth = everyday_sketches(width)[name]
            truth_N = _to_grid(truth, 16).ravel()
            found = len(np.unique(sketch_regions(drawing, mode="outline")))
            scores = [agreement(project_sketch(drawing, s, mode="outline").labels[-1], truth_N) for s in (1, 2, 3)]
            row.append(f"{width:>2} px " + " / ".join(f"{x:.2f}" for x in scores) + f" ({found} regions)")
            if args.out is not None and width == 6:
                args.out.mkdir(parents=True, exist_ok=True)
                labels_N = project_sketch(drawing, 3, mode="outline").labels[-1]
                stem = name.replace(" ", "_")
                Image.fromarray(drawing).save(args.out / f"{stem}.png")
                Image.fromarray(render_map(labels_N, 3)).resize((256, 256), Image.NEAREST).save(args.out / f"{stem}_stage3.png")
        print(f"  {name:<24} " + "   ".join(row))


if __name__ == "__main__":
    main()
