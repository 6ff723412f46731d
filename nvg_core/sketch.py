"""Sketches to region maps, with OpenCV: regions filled with palette colours, or outlines in any colour.

    regions_HW = sketch_regions("layout.png")                    # filled regions: palette indices
    regions_HW = sketch_regions("doodle.png", mode="outline")    # closed strokes: region numbers
    projection = project_sketch("layout.png", stage=2)           # the nearest balanced tree, with agreement

Both modes work on a copy no larger than WORK_SIDE pixels a side (the structure lives on a 16x16 grid), so
time and memory grow linearly with the file's pixels, with a small constant; files go through
nvg_core.images (pixel limit, EXIF orientation, transparency on white).
"""

from __future__ import annotations

import cv2
import numpy as np

from .images import ImageLike, load_image, to_rgb
from .structure import Projection, project

PALETTE = ("#ffffff", "#e6194b", "#3cb44b", "#4363d8", "#ffe119", "#f58231", "#911eb4", "#42d4f4", "#000000")
PALETTE_NAMES = ("white", "red", "green", "blue", "yellow", "orange", "purple", "cyan", "black")
WORK_SIDE = 512
MIN_SHARE = 0.005  # regions and colours under this share of the canvas are specks (stroke edges, slips)
MODES = ("palette", "outline")


def palette_rgb() -> np.ndarray:
    """The palette as (K, 3) uint8 RGB."""
    return np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in PALETTE], dtype=np.uint8)


def read_sketch(source: ImageLike) -> np.ndarray:
    """A sketch file, image or array as (H, W, 3) uint8 RGB no larger than WORK_SIDE a side (area-averaged)."""
    rgb_HW3 = np.asarray(to_rgb(load_image(source)))
    scale = WORK_SIDE / max(rgb_HW3.shape[:2])
    if scale < 1:
        size = (max(1, round(rgb_HW3.shape[1] * scale)), max(1, round(rgb_HW3.shape[0] * scale)))
        rgb_HW3 = cv2.resize(rgb_HW3, size, interpolation=cv2.INTER_AREA)
    return rgb_HW3


def _fill_from_nearest(labels_HW: np.ndarray, unknown_HW: np.ndarray) -> np.ndarray:
    """Give every unknown pixel the label of the nearest known pixel (a Voronoi fill, linear in pixels)."""
    if not unknown_HW.any() or unknown_HW.all():
        return labels_HW
    _, nearest_HW = cv2.distanceTransformWithLabels(unknown_HW.astype(np.uint8), cv2.DIST_L2, 3,
                                                    labelType=cv2.DIST_LABEL_PIXEL)
    known_K = labels_HW[~unknown_HW]  # OpenCV numbers the known pixels 1..K in row-major order
    return known_K[nearest_HW - 1].reshape(labels_HW.shape)


def _drop_specks(regions_HW: np.ndarray) -> np.ndarray:
    """Merge connected pieces under MIN_SHARE of the canvas into their neighbours."""
    speck_HW = np.zeros(regions_HW.shape, bool)
    for region in np.unique(regions_HW):
        count, pieces_HW, stats, _ = cv2.connectedComponentsWithStats((regions_HW == region).astype(np.uint8), 4)
        small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < MIN_SHARE * regions_HW.size)
        speck_HW |= np.isin(pieces_HW, small[small > 0])
    return _fill_from_nearest(regions_HW, speck_HW)


def palette_regions(rgb_HW3: np.ndarray) -> np.ndarray:
    """(H, W) palette indices: each pixel's nearest palette colour among the colours the sketch really uses
    (those covering under MIN_SHARE, such as anti-aliased stroke edges, are re-snapped), specks merged."""
    colours_K3 = palette_rgb().astype(np.float32)
    pixels_P3 = rgb_HW3.reshape(-1, 3).astype(np.float32)
    distances_PK = ((pixels_P3[:, None, :] - colours_K3[None]) ** 2).sum(-1)
    counts_K = np.bincount(distances_PK.argmin(1), minlength=len(colours_K3))
    distances_PK[:, counts_K < MIN_SHARE * len(pixels_P3)] = np.inf
    return _drop_specks(distances_PK.argmin(1).reshape(rgb_HW3.shape[:2]))


def outline_regions(rgb_HW3: np.ndarray, gap: float = 0.03) -> np.ndarray:
    """(H, W) region numbers from strokes of any colour: the areas the strokes enclose, and the rest.

    Strokes are the pixels far from the paper colour (the most common one); gaps up to `gap` of the longer
    side are closed (morphological closing), so an outline with a small break still encloses its area.
    Enclosed areas are connected components of the paper; stroke pixels join their nearest area.
    """
    grey_HW = cv2.cvtColor(rgb_HW3, cv2.COLOR_RGB2GRAY).astype(np.int16)
    paper = np.bincount(grey_HW.ravel(), minlength=256).argmax()
    stroke_HW = (np.abs(grey_HW - paper) > 48).astype(np.uint8)
    width = max(3, round(gap * max(rgb_HW3.shape[:2])) | 1)
    stroke_HW = cv2.morphologyEx(stroke_HW, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width)))
    _, areas_HW = cv2.connectedComponents(1 - stroke_HW, connectivity=4)
    return _drop_specks(_fill_from_nearest(areas_HW, stroke_HW.astype(bool)))


def sketch_regions(source: ImageLike, mode: str = "palette") -> np.ndarray:
    """The drawn regions of a sketch (H, W) at working size; see palette_regions and outline_regions."""
    if mode not in MODES:
        raise ValueError(f"the sketch mode must be one of {', '.join(MODES)}, got {mode!r}")
    rgb_HW3 = read_sketch(source)
    return palette_regions(rgb_HW3) if mode == "palette" else outline_regions(rgb_HW3)


def project_sketch(source: ImageLike, stage: int, grid: int = 16, mode: str = "palette",
                   max_stage: int = 4) -> Projection:
    """A sketch's regions fitted to the nearest balanced tree up to `stage` (1..max_stage), with its agreement.

    Refuses a sketch of one region, and a palette sketch with more colours than the stage has clusters."""
    if not 1 <= int(stage) <= max_stage:
        raise ValueError(f"a sketch applies to a stage between 1 and {max_stage}, got {stage}")
    regions_HW = sketch_regions(source, mode)
    used = len(np.unique(regions_HW))
    if used < 2:
        raise ValueError("the sketch is a single region: draw at least one region in a palette colour"
                         if mode == "palette" else "the sketch has no closed outline: draw a closed shape")
    if mode == "palette" and used > 2 ** int(stage):
        raise ValueError(f"the sketch has {used} colours but stage {int(stage)} has only {2 ** int(stage)} clusters: "
                         f"use at most {2 ** int(stage)} colours or a later stage")
    return project(regions_HW, int(stage), grid=grid)


def render_in_drawing_colours(source: ImageLike, labels_N: np.ndarray, size: int = 192) -> np.ndarray:
    """A projected map (one stage's labels on the G x G grid) as (size, size, 3) uint8, each cluster in the
    colour most of its cells were drawn in, so the projection reads as the drawing it came from."""
    labels_N = np.asarray(labels_N).ravel()
    grid = int(round(len(labels_N) ** 0.5))
    rgb_HW3 = read_sketch(source)
    cells_N3 = cv2.resize(rgb_HW3, (grid, grid), interpolation=cv2.INTER_NEAREST).reshape(-1, 3)
    colours_N3 = np.empty_like(cells_N3)
    for cluster in np.unique(labels_N):
        members = labels_N == cluster
        values, counts = np.unique(cells_N3[members], axis=0, return_counts=True)
        colours_N3[members] = values[counts.argmax()]
    return cv2.resize(colours_N3.reshape(grid, grid, 3), (size, size), interpolation=cv2.INTER_NEAREST)
