import re

import numpy as np
import pytest
from PIL import Image

from nvg_core.cli import build_parser, main


@pytest.fixture(scope="module")
def model_dir(tiny_pipeline, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    tiny_pipeline.save_pretrained(folder)
    return folder


def test_help_explains_every_command(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for command in ("generate", "extract", "convert", "bench"):
        assert command in text


def test_help_of_every_command_imports_neither_torch_nor_diffusers():
    import subprocess
    import sys
    commands = [[], ["generate"], ["extract"], ["edit"], ["convert"], ["bench"], ["train", "generator"],
                ["train", "evaluator"], ["eval"], ["data", "emoji"], ["data", "folder"]]
    script = ("import sys\nfrom nvg_core.cli import build_parser\n"
              f"for argv in {commands!r}:\n"
              "    try:\n        build_parser().parse_args([*argv, '--help'])\n    except SystemExit:\n        pass\n"
              "print(sorted(m for m in ('torch', 'diffusers', 'cv2', 'skimage') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_version_is_the_packages():
    import tomllib
    from pathlib import Path

    from nvg_core import cli, sketch
    version = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["version"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--version"])
    assert cli.metadata.version("nvg-studio") == version
    assert cli.SKETCH_MODES == sketch.MODES  # --sketch-mode's choices, written out in the parser


def test_generate_writes_the_image_and_the_stage_strip(model_dir, tmp_path):
    out, strip = tmp_path / "x.png", tmp_path / "strip.png"
    assert main(["generate", "--model", str(model_dir), "--class", "cat", "--seed", "4", "--flow-steps", "2",
                 "--out", str(out), "--stages-out", str(strip), "--device", "cpu"]) == 0
    assert Image.open(out).size == (16, 16) and Image.open(strip).size[0] > Image.open(strip).size[1]
    again = tmp_path / "y.png"
    main(["generate", "--model", str(model_dir), "--class", "cat", "--seed", "4", "--flow-steps", "2", "--out", str(again)])
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(again)))


def test_generate_writes_the_coarse_to_fine_gif_and_takes_a_random_seed(model_dir, tiny_pipeline, tmp_path, capsys):
    gif = tmp_path / "steps.gif"
    assert main(["generate", "--model", str(model_dir), "--class", "cat", "--seed", "-1", "--out", str(tmp_path / "r.png"),
                 "--gif", str(gif)]) == 0
    seed = int(capsys.readouterr().out.split("seed ")[1].split(")")[0])
    assert 0 <= seed < 2**31
    result = tiny_pipeline.generate(["cat"], seeds=[seed])
    assert gif.read_bytes() == tiny_pipeline.progression_gif(result)  # the same image, made again from its seed
    with Image.open(gif) as frames:
        assert frames.n_frames == tiny_pipeline.num_stages and frames.size == (256, 128)


def test_generate_several_images_numbers_the_files(model_dir, tmp_path):
    assert main(["generate", "--model", str(model_dir), "--class", "1", "--num-images", "2", "--out", str(tmp_path / "v.png")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v_0.png", "v_1.png"]


def test_bad_input_is_an_error_and_writes_nothing(model_dir, tmp_path, capsys):
    out = tmp_path / "never.png"
    assert main(["generate", "--model", str(model_dir), "--class", "unicorn", "--out", str(out)]) == 2
    assert "unknown class 'unicorn'" in capsys.readouterr().err and not out.exists()
    assert main(["generate", "--model", str(tmp_path / "missing"), "--class", "cat", "--out", str(out)]) == 2
    assert main(["extract", "--model", str(model_dir), "--image", str(tmp_path / "none.png"), "--out", str(out)]) == 2
    assert not list(tmp_path.iterdir())


def test_extract_saves_every_stage_map(model_dir, tmp_path):
    reference = tmp_path / "ref.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(reference)
    out = tmp_path / "maps.png"
    assert main(["extract", "--model", str(model_dir), "--image", str(reference), "--out", str(out)]) == 0
    assert Image.open(out).size == (128 * 5, 128)


@pytest.mark.parametrize("mode", ["palette", "outline"])
def test_generate_follows_a_sketch_file(model_dir, tmp_path, capsys, mode):
    import cv2
    from nvg_core.sketch import palette_rgb, project_sketch
    layout = np.full((256, 256, 3), 255, np.uint8)
    if mode == "palette":
        layout[:, :128] = palette_rgb()[1]
    else:
        cv2.circle(layout, (128, 128), 70, (0, 0, 0), 6, cv2.LINE_AA)
    sketch = tmp_path / "layout.png"
    Image.fromarray(layout).save(sketch)
    out, strip = tmp_path / "s.png", tmp_path / "strip.png"
    assert main(["generate", "--model", str(model_dir), "--class", "dog", "--sketch", str(sketch), "--sketch-stage", "2",
                 "--sketch-mode", mode, "--out", str(out), "--flow-steps", "2"]) == 0
    assert "agreement with the drawing" in capsys.readouterr().out and out.exists()
    assert project_sketch(sketch, 2, grid=4, mode=mode).agreement > 0.8


def test_edit_changes_the_image_under_the_mask_only(tmp_path, capsys):
    """Bundled model: outside the mask (beyond the 2-pixel feather) the edited file has the image's pixels."""
    from nvg_core.images import read_mask
    image = np.full((64, 64, 3), 255, np.uint8)
    image[16:48, 16:48] = (230, 40, 40)
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255
    Image.fromarray(image).save(tmp_path / "image.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert (read_mask(tmp_path / "mask.png") == (mask > 0)).all()
    out = tmp_path / "edited.png"
    assert main(["edit", "--image", str(tmp_path / "image.png"), "--mask", str(tmp_path / "mask.png"),
                 "--class", "flower", "--out", str(out), "--device", "cpu"]) == 0  # from the default stage
    said = re.search(r"\((\d+)% of the painted pixels changed by more than 24/255\)", capsys.readouterr().out)
    edited = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert (edited[:, :29] == image[:, :29]).all()
    inside = float((np.abs(edited[:, 32:] - image[:, 32:]).max(-1) > 24).mean())
    assert said and int(said[1]) == round(100 * inside) and inside > 0.2, inside  # 33% measured: a white background stays white
    assert main(["edit", "--image", str(tmp_path / "image.png"), "--mask", str(tmp_path / "image.png"), "--from-stage", "9",
                 "--class", "flower", "--out", str(out), "--device", "cpu"]) == 2
    assert "from_stage must be in [0, 8]" in capsys.readouterr().err
