import io

import cv2
import numpy as np
import pytest
from PIL import Image

from nvg_core.sketch import WORK_SIDE, palette_rgb, project_sketch, read_sketch, sketch_regions

WHITE, RED, GREEN, BLUE = (palette_rgb()[i] for i in range(4))


def blocks(size=128):
    """White canvas, a red and a blue block, and an anti-aliased (pink) edge between red and white."""
    canvas = np.full((size, size, 3), 255, np.uint8)
    canvas[8:40, 8:30] = RED
    canvas[30:60, 34:60] = BLUE
    canvas[8:40, 30] = (240, 140, 160)
    return canvas


def outline(size=512, gap_degrees=0, width=6):
    """A circle drawn with one dark anti-aliased stroke, optionally with a gap."""
    canvas = np.full((size, size, 3), 255, np.uint8)
    start = gap_degrees / 2
    cv2.ellipse(canvas, (size // 2, size // 2), (size // 4, size // 4), 0, start, 360 - start, (30, 30, 30), width, cv2.LINE_AA)
    return canvas


def test_palette_colours_are_snapped_and_edge_blends_dropped():
    regions = sketch_regions(blocks())
    assert set(np.unique(regions)) == {0, 1, 3}  # white, red, blue: the pink edge snapped away
    assert (regions[8:40, 8:30] == 1).all() and (regions[31:59, 35:59] == 3).all()


def test_specks_join_the_region_around_them():
    canvas = np.full((200, 200, 3), 255, np.uint8)
    canvas[:, 100:] = BLUE
    canvas[50:53, 150:153] = RED  # a 3x3 slip of the brush inside the blue half
    canvas[150:160, 20:30] = RED  # 100 px: under 0.5% of the canvas, a speck too
    regions = sketch_regions(canvas)
    assert set(np.unique(regions)) == {0, 3}
    assert (regions[50:53, 150:153] == 3).all() and (regions[150:160, 20:30] == 0).all()


def test_one_closed_stroke_makes_a_disc_and_its_background():
    regions = sketch_regions(outline(), mode="outline")
    values, counts = np.unique(regions, return_counts=True)
    assert len(values) == 2
    disc = regions[256, 256]
    assert regions[5, 5] != disc and abs((regions == disc).sum() / (np.pi * 128**2) - 1) < 0.05


def test_an_outline_with_a_small_gap_still_encloses_its_area():
    assert len(np.unique(sketch_regions(outline(gap_degrees=3), mode="outline"))) == 2  # a 13 px gap
    assert len(np.unique(sketch_regions(outline(gap_degrees=40), mode="outline"))) == 1  # a wide opening leaks


def test_large_sketches_are_worked_on_at_a_bounded_size():
    big = cv2.resize(blocks(), (3000, 2000), interpolation=cv2.INTER_NEAREST)
    assert max(read_sketch(big).shape[:2]) == WORK_SIDE
    assert set(np.unique(sketch_regions(big))) == {0, 1, 3}


def test_files_are_read_as_nvg_core_reads_images():
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[:32, :, :3], rgba[:32, :, 3] = RED, 255  # the rest is transparent: white paper
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    regions = sketch_regions(buffer.getvalue())
    assert (regions[:32] == 1).all() and (regions[32:] == 0).all()


def test_projection_of_a_fixed_sketch_is_pinned():
    """The same regions, projection and agreement as the app's earlier numpy snapping gave."""
    projection = project_sketch(blocks(), 2, grid=16)
    assert projection.labels.shape == (3, 256)
    assert projection.agreement == pytest.approx(0.91796875)
    assert projection.labels[2].reshape(16, 16)[::4, ::4].tolist() == [[0, 0, 1, 2], [0, 0, 0, 2], [1, 0, 1, 2], [3, 3, 3, 2]]


@pytest.mark.parametrize("sketch, stage, mode, message", [
    (np.full((32, 32, 3), 255, np.uint8), 2, "palette", "single region"),
    (np.full((32, 32, 3), 255, np.uint8), 2, "outline", "no closed outline"),
    (blocks(), 1, "palette", "3 colours but stage 1 has only 2"),
    (blocks(), 5, "palette", "between 1 and 4"),
    (blocks(), 2, "watercolour", "mode must be one of"),
])
def test_unusable_sketches_get_specific_messages(sketch, stage, mode, message):
    with pytest.raises(ValueError, match=message):
        project_sketch(sketch, stage, mode=mode)
