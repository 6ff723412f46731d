"""nvg data folder: an image folder (class subfolders, or flat) read as uploads are, into a dataset folder."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from nvg_core.cli import main
from nvg_core.data.folder import build_folder_dataset, load_folder_dataset


def _png(colour, size=(40, 30), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "pictures"
    (root / "cats").mkdir(parents=True)
    (root / "dogs").mkdir()
    (root / "cats" / "a.png").write_bytes(_png((200, 10, 10)))
    (root / "cats" / "copy.png").write_bytes(_png((200, 10, 10)))  # the same bytes: skipped
    (root / "cats" / "broken.png").write_bytes(_png((0, 0, 0))[:40])  # truncated: skipped
    (root / "cats" / "notes.txt").write_text("not an image")
    (root / "dogs" / "tiny.png").write_bytes(_png((0, 0, 255), size=(6, 6)))  # too small: skipped
    (root / "dogs" / "clear.png").write_bytes(_png((0, 0, 255, 0), mode="RGBA"))  # transparent: white
    rotated = Image.new("RGB", (40, 20), (10, 200, 10))
    exif = rotated.getexif()
    exif[0x0112] = 6  # EXIF orientation: rotate 90 degrees to show upright
    buffer = io.BytesIO()
    rotated.save(buffer, format="JPEG", exif=exif.tobytes())
    (root / "dogs" / "turned.jpg").write_bytes(buffer.getvalue())
    (root / "stray.png").write_bytes(_png((1, 2, 3)))  # beside the class folders: skipped
    return root


def test_class_subfolders_become_classes_and_every_skip_has_a_reason(tree, tmp_path):
    summary = build_folder_dataset(tree, tmp_path / "ds", size=16)
    data = load_folder_dataset(tmp_path / "ds")
    assert data.classes == ("cats", "dogs") and summary["per_class"] == {"cats": 1, "dogs": 2}
    assert data.images.shape == (3, 16, 16, 3) and data.images.dtype == np.uint8
    assert isinstance(data.images, np.memmap) and data.label.tolist() == [0, 1, 1]
    assert data.paths == ["cats/a.png", "dogs/clear.png", "dogs/turned.jpg"]
    assert (data.images[0] == (200, 10, 10)).all() and (data.images[1] == 255).all()  # alpha on white
    why = {entry["path"]: entry["why"] for entry in summary["skipped"]}
    assert why["cats/copy.png"] == "the same bytes as cats/a.png"
    assert "not an image that can be read" in why["cats/broken.png"] and "not an image file name" in why["cats/notes.txt"]
    assert why["dogs/tiny.png"].startswith("too small (6x6") and why["stray.png"] == "not in a class subfolder"
    assert json.loads((tmp_path / "ds" / "index.json").read_text())["files"][0]["sha256"]


def test_a_flat_folder_is_one_class_and_pad_keeps_the_whole_picture_where_crop_takes_the_centre(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    picture = np.zeros((20, 40, 3), np.uint8)
    picture[:, :20] = 255  # left half white, right half black
    Image.fromarray(picture).save(flat / "wide.png")
    build_folder_dataset(flat, tmp_path / "pad", size=16, fit="pad")
    padded = load_folder_dataset(tmp_path / "pad")
    assert padded.classes == ("flat",) and padded.label.tolist() == [0]  # a flat folder is one class
    assert (padded.images[0, 0] == 255).all() and (padded.images[0, 8, 12] < 30).all()  # white bands, black kept
    build_folder_dataset(flat, tmp_path / "crop", size=16, fit="crop")
    cropped = load_folder_dataset(tmp_path / "crop").images[0]
    assert (cropped[8, 2] > 225).all() and (cropped[8, 13] < 30).all()  # the centre square of both halves


def test_the_command_builds_the_dataset_and_refuses_an_empty_folder(tree, tmp_path, capsys):
    assert main(["data", "folder", str(tree), "--size", "16", "--out", str(tmp_path / "ds")]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 3
    (tmp_path / "empty").mkdir()
    assert main(["data", "folder", str(tmp_path / "empty"), "--out", str(tmp_path / "none")]) == 2
    assert "no files in" in capsys.readouterr().err


def test_a_model_of_its_own_classes_is_measured_against_its_folder_dataset(shapes_folder, tmp_path, capsys):
    import dataclasses
    import json

    from nvg_core.cli import main
    from nvg_core.pipeline import NVGPipeline
    from nvg_core.tokenizer import TOKENIZER_CONFIGS, NVGTokenizer
    from nvg_core.transformer import TRANSFORMER_CONFIGS, NVGTransformer
    transformer = NVGTransformer.from_spec(dataclasses.replace(TRANSFORMER_CONFIGS["tiny"], num_classes=3))
    NVGPipeline(NVGTokenizer.from_spec(TOKENIZER_CONFIGS["tiny"]), transformer, ["bars", "discs", "squares"],
                name="shapes").save_pretrained(tmp_path / "shapes")
    common = ["eval", "--model", str(tmp_path / "shapes"), "--data", str(shapes_folder[1]), "--device", "cpu"]
    assert main([*common, "--num-samples", "6", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sections"] == ["tokenizer", "quality"] and len(report["psnr_per_stage"]) == 5
    assert report["fd"] > 0 and report["fd_real_vs_real"] >= 0 and "not an FID" in report["feature_space"]
    assert main([*common, "--sections", "swap"]) == 2
    assert "tokenizer, quality only" in capsys.readouterr().err
