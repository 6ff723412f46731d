"""ImageFiles: the files the app hands Gradio for returned images."""

import numpy as np
from PIL import Image

from app.components import ImageFiles


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
