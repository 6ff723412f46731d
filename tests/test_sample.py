"""`nvg sample`: the same array on 1 or 2 processes, a stopped run goes on, PNGs keep their recipes."""

import numpy as np
import pytest
import torch

from conftest import make_tiny_pipeline, torchrun
from nvg_core import recipe
from nvg_core.cli import main
from nvg_core.images import to_uint8
from nvg_core.pipeline import NVGPipeline

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without torch.distributed")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_model")
    make_tiny_pipeline().save_pretrained(folder)
    return folder


def _args(model_dir, out, *more) -> list[str]:
    """12 images (3 per class of 4) in 6 batches of 2."""
    return ["sample", "--model", str(model_dir), "--per-class", "3", "--batch-size", "2", "--out", str(out),
            "--device", "cpu", *more]


def _arrays(path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {name: npz[name] for name in npz.files}


def test_one_and_two_processes_write_the_same_array_and_a_stopped_run_goes_on_where_it_stopped(model_dir, tmp_path):
    assert main(_args(model_dir, tmp_path / "one")) == 0
    one = _arrays(tmp_path / "one.npz")
    assert one["arr_0"].shape == (12, 16, 16, 3) and one["arr_0"].dtype == np.uint8
    assert one["labels"].tolist() == [0, 1, 2, 3] * 3 and one["seeds"].tolist() == list(range(12))
    assert not (tmp_path / "one.shards").exists()  # removed once merged

    torchrun(_args(model_dir, tmp_path / "two"))
    two = _arrays(tmp_path / "two.npz")
    assert all(np.array_equal(one[name], two[name]) for name in ("arr_0", "labels", "seeds"))

    torchrun(_args(model_dir, tmp_path / "cut", "--max-minutes", "0"))  # each process stops after one batch
    assert sorted(p.name for p in (tmp_path / "cut.shards").glob("batch_*.npz")) == ["batch_000000.npz",
                                                                                     "batch_000001.npz"]
    assert not (tmp_path / "cut.npz").exists()
    assert main(_args(model_dir, tmp_path / "cut")) == 0  # goes on in one process
    assert np.array_equal(_arrays(tmp_path / "cut.npz")["arr_0"], one["arr_0"])


def test_a_run_does_not_mix_its_batches_with_another_runs(model_dir, tmp_path, capsys):
    main(_args(model_dir, tmp_path / "run", "--max-minutes", "0"))
    assert main(_args(model_dir, tmp_path / "run", "--seed", "5")) == 2
    assert "holds batches of another run" in capsys.readouterr().err
    assert main(_args(model_dir, tmp_path / "run", "--bf16")) == 2  # CPU
    assert "CUDA only" in capsys.readouterr().err


def test_png_files_keep_their_recipes_and_are_made_again_bit_for_bit(model_dir, tmp_path):
    assert main(_args(model_dir, tmp_path / "run", "--classes", "cat", "dog", "--png", str(tmp_path / "png"))) == 0
    arrays = _arrays(tmp_path / "run.npz")
    assert arrays["labels"].tolist() == [2, 3] * 3
    assert sorted(p.name for p in (tmp_path / "png" / "dog").iterdir()) == ["000001.png", "000003.png", "000005.png"]
    pipe = NVGPipeline.from_pretrained(model_dir, device="cpu")
    again = pipe.reproduce(recipe.read_recipe(tmp_path / "png" / "dog" / "000003.png"))
    assert np.array_equal(to_uint8(again.images)[0], arrays["arr_0"][3])
