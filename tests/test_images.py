import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

from nvg_core.images import load_image, read_image, to_pil, to_pixels, to_rgb, to_uint8

from hostile_files import hostile_files


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "I;16", "I", "F", "CMYK"])
def test_every_common_mode_becomes_rgb_pixels_in_range(mode):
    image = Image.new("RGB", (40, 24), (200, 30, 90)).convert(mode)
    pixels = to_pixels(image, 16)
    assert pixels.shape == (1, 3, 16, 16) and pixels.dtype == torch.float32
    assert pixels.min() >= -1 and pixels.max() <= 1


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    rgba.putpixel((8, 8), (255, 0, 0, 255))
    array = to_uint8(to_pixels(rgba, 16))[0]
    assert (array[0, 0] == 255).all() and tuple(array[8, 8]) == (255, 0, 0)
    palette = Image.new("P", (16, 16), 0)
    palette.info["transparency"] = 0
    assert (to_uint8(to_pixels(palette, 16)) == 255).all()


def test_deep_images_keep_their_levels():
    white16 = Image.fromarray(np.full((8, 8), 65535, np.uint16))  # a 16-bit image on the 16-bit scale
    assert white16.mode == "I;16" and (to_uint8(to_pixels(white16, 8)) == 255).all()
    ramp16 = np.linspace(0, 65535, 64).astype(np.uint16).reshape(8, 8)
    from_png = to_uint8(to_pixels(png_bytes(Image.fromarray(ramp16)), 8))[0, :, :, 0]
    assert from_png.min() <= 2 and from_png.max() >= 253
    grey = Image.new("L", (8, 8), 128)  # Pillow's own conversions keep the 8-bit scale
    for deep in (grey.convert("I;16"), grey.convert("I"), grey.convert("F"), np.full((8, 8), 128, np.uint16)):
        assert np.abs(to_uint8(to_pixels(deep, 8)).astype(int) - 128).max() <= 1


def test_resize_keeps_the_centre_of_non_square_images():
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, 20:40] = 255  # a white centre third
    out = to_uint8(to_pixels(wide, 20))[0]
    assert out.shape == (20, 20, 3) and out.mean() > 240


def test_official_resize_ratio_crops_inside_the_resized_image():
    image = Image.new("RGB", (300, 200), (255, 255, 255))
    assert to_pixels(image, 256, resize_ratio=1.125).shape == (1, 3, 256, 256)  # 288 px shorter side, centre 256
    with pytest.raises(ValueError, match="resize_ratio >= 1"):
        to_pixels(image, 256, resize_ratio=0.5)


def test_paths_bytes_arrays_and_lists_are_accepted(tmp_path):
    image = Image.new("RGB", (8, 8), (10, 20, 30))
    path = tmp_path / "x.png"
    image.save(path)
    batch = to_pixels([image, str(path), path, png_bytes(image), np.asarray(image), np.ones((8, 8), np.float32)], 8)
    assert batch.shape == (6, 3, 8, 8)


@pytest.mark.parametrize("bad, message", [
    (b"", "empty"),
    (b"definitely not an image", "not an image that can be read"),
    ("/no/such/file.png", "no image file"),
    (np.zeros((0, 5, 3), np.uint8), "empty"),
    (np.full((4, 4), np.nan, np.float32), "NaN"),
    (np.zeros((4, 4, 2), np.uint8), "must be"),
    (np.zeros((2, 4, 4, 3), np.uint8), "must be"),
    (np.zeros((4, 4), np.int64), "uint8, uint16, bool or float"),
    (np.full((4, 4, 3), 200.0), r"must be in \[0, 1\]"),
    (12345, "cannot read an image from a int"),
    ([], "no images"),
])
def test_bad_inputs_raise_clear_value_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        to_pixels(bad, 16)


def test_truncated_lazily_opened_pil_image_is_refused():
    data = png_bytes(Image.effect_noise((64, 64), 50))
    with pytest.raises(ValueError, match="truncated or damaged"):
        to_pixels(Image.open(io.BytesIO(data[: len(data) // 2])), 16)


def test_zero_size_pil_image_is_refused():
    with pytest.raises(ValueError, match="zero size"):
        to_pixels(Image.new("RGB", (0, 5)), 16)


def test_output_conversion_truncates_like_the_authors():
    pixels = torch.tensor([-1.0, 0.0, 0.999, 1.0, 2.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert to_uint8(pixels)[0, 0, :, 0].tolist() == [0, 127, 254, 255, 255]
    assert to_pil(pixels)[0].size == (5, 1)
    assert load_image(to_pil(pixels)[0]).mode == "RGB"


@pytest.mark.parametrize("name", sorted(hostile_files()))
def test_awkward_files_are_read_or_refused_with_a_message_naming_the_problem(name):
    data, _, refusal = hostile_files()[name]
    if refusal is None:
        assert to_pixels(data, 16).shape == (1, 3, 16, 16)
    else:
        with pytest.raises(ValueError, match=refusal) as error:
            to_pixels(data, 16)
        assert not re.search(r"0x[0-9a-f]{6}|BytesIO|/tmp", str(error.value))


def test_files_are_read_upright_opaque_on_white_and_on_the_right_scale():
    files = hostile_files()
    upright, notes = read_image(files["exif rotated"][0])
    assert upright.size == (64, 96) and "EXIF" in notes[0]
    assert np.asarray(to_rgb(load_image(files["transparent"][0]))).min() == 255  # all white
    assert "transparency composited on white" in read_image(files["half transparent"][0])[1]
    grey = np.asarray(to_rgb(load_image(files["16-bit"][0])))
    assert 100 < grey.mean() < 160  # on the 16-bit scale, not saturated
    assert "first frame" in read_image(files["animated"][0])[1][0]
