"""ImageFiles: the files the app hands Gradio for returned images."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio")

from app.components import ImageFiles  # noqa: E402
from app.handlers import KEEP, Download  # noqa: E402
from nvg_core.recipe import read_recipe  # noqa: E402


def _image(value: int) -> Image.Image:
    return Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8))


def test_images_become_content_named_png_files_inside_lists_and_tuples(tmp_path):
    files = ImageFiles(tmp_path)
    out = files.replace([(_image(10), "a"), (_image(10), "b"), (_image(200), "c")], None)
    (first, a), (second, b), (third, c) = out
    assert (a, b, c) == ("a", "b", "c")
    assert first == second != third  # equal pictures share one file
    with Image.open(third) as png:
        assert png.format == "PNG" and png.getpixel((0, 0)) == (200, 200, 200)


def test_a_stream_that_sends_its_strip_again_encodes_each_tile_once(tmp_path, monkeypatch):
    saves = []
    original = Image.Image.save
    monkeypatch.setattr(Image.Image, "save", lambda self, *a, **k: saves.append(self) or original(self, *a, **k))
    files = ImageFiles(tmp_path)
    tiles = [_image(1), _image(2)]
    sent = {}
    first = files.replace(list(tiles), sent)
    tiles.append(_image(3))
    second = files.replace(list(tiles), sent)
    assert len(saves) == 3
    assert second[:2] == first
    files.replace(list(tiles))  # without a stream's record every tile is encoded again
    assert len(saves) == 6


def test_downloads_keep_their_readable_name_and_recipe_and_keep_leaves_an_output_alone(tiny_pipeline, tmp_path):
    files = ImageFiles(tmp_path)
    image = tiny_pipeline(["cat"], seeds=[3]).images[0]  # carries its recipe in image.info
    path, gif, skipped = files.replace([Download("cat-seed3.png", image), Download("cat-seed3-stages.gif", b"GIF89a..."),
                                        KEEP])
    assert Path(path).name == "cat-seed3.png" and Path(gif).name == "cat-seed3-stages.gif"
    assert Path(path).parent != Path(gif).parent  # each in a folder named by its content
    assert read_recipe(path) == read_recipe(image) is not None
    assert skipped == gr.skip()
