"""`nvg fid`: .npz images read a batch at a time, a TorchScript feature network, torchmetrics' distance.

The real network (inception-2015-12-05.pt) is not downloadable here: a small TorchScript module with the same
call (images, return_features=True) stands in for it."""

import numpy as np
import pytest
import torch

from nvg_core.cli import main
from nvg_core.fid import image_batches

pytest.importorskip("torchmetrics")


class PooledColours(torch.nn.Module):
    """Each image's mean colour in 4 quadrants, and their squares: 24 features."""

    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(images.float(), 2).flatten(1)
        return torch.cat([pooled, pooled**2 / 255], dim=1)


@pytest.fixture()
def network(tmp_path):
    path = tmp_path / "features.pt"
    torch.jit.script(PooledColours()).save(str(path))
    return path


def _images(seed: int, shift: int = 0) -> np.ndarray:
    images = np.random.default_rng(seed).integers(0, 200, (40, 16, 16, 3))
    return (images + shift).astype(np.uint8)


def test_image_batches_are_the_array_in_order_whether_stored_or_compressed(tmp_path):
    images = _images(0)
    np.savez(tmp_path / "stored.npz", arr_0=images)
    np.savez_compressed(tmp_path / "compressed.npz", arr_0=images)
    for name in ("stored.npz", "compressed.npz"):
        batches = list(image_batches(tmp_path / name, 16))
        assert [len(b) for b in batches] == [16, 16, 8] and np.array_equal(np.concatenate(batches), images)
    np.savez(tmp_path / "floats.npz", arr_0=images.astype(np.float32))
    with pytest.raises(ValueError, match="uint8 N x H x W x 3"):
        next(image_batches(tmp_path / "floats.npz", 16))


def test_fid_is_zero_for_the_same_images_and_grows_with_a_colour_shift(network, tmp_path, capsys):
    np.savez(tmp_path / "reference.npz", arr_0=_images(1))
    np.savez(tmp_path / "same.npz", arr_0=_images(1))
    np.savez(tmp_path / "shifted.npz", arr_0=_images(1, shift=50))
    values = []
    for samples in ("same.npz", "shifted.npz"):
        assert main(["fid", str(tmp_path / samples), str(tmp_path / "reference.npz"), "--inception", str(network),
                     "--batch-size", "16", "--device", "cpu"]) == 0
        out = capsys.readouterr().out
        assert "(40 samples against 40 reference images" in out
        values.append(float(out.split()[1]))
    assert abs(values[0]) < 1e-2 and values[1] > 100 * max(abs(values[0]), 1e-3)


def test_without_the_network_file_the_command_says_how_to_provide_it(tmp_path, capsys):
    np.savez(tmp_path / "a.npz", arr_0=_images(2))
    assert main(["fid", str(tmp_path / "a.npz"), str(tmp_path / "a.npz"), "--inception", str(tmp_path / "none.pt")]) == 2
    assert "pass --inception FILE" in capsys.readouterr().err
