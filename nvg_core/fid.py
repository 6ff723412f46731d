"""`nvg fid`: the FID of an .npz of samples against a reference .npz, as the ADM evaluation suite scores them.

    nvg fid samples/nvg-d16.npz VIRTUAL_imagenet256_labeled.npz --inception inception-2015-12-05.pt

Both files hold images as `arr_0` (uint8, N x H x W x 3: what `nvg sample` writes, and the ADM reference
batches); they are read a batch at a time, so memory stays flat whatever N. The features are those of the
TensorFlow FID Inception network in TorchScript (`inception-2015-12-05.pt`, the file StyleGAN2-ADA's and
StyleGAN3's metrics and clean-fid's legacy_tensorflow mode load; 2048 pool features per image, resized
inside to 299 px); it is given as a file, never downloaded. The Fréchet distance of the two feature sets
is torchmetrics' FrechetInceptionDistance (float64 sums and covariances, maintained and tested upstream).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

INCEPTION_FILE = "inception-2015-12-05.pt"
HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class InceptionFeatures(torch.nn.Module):
    """The TorchScript Inception as a feature extractor: uint8 (B, 3, H, W) in, (B, 2048) features out."""

    def __init__(self, path: str | Path):
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"nvg fid needs the TensorFlow FID Inception network in TorchScript, {INCEPTION_FILE} (the file "
                f"StyleGAN2-ADA's metrics and clean-fid download), and it is not at {path}: fetch it on a machine "
                "with internet access and pass --inception FILE")
        self.network = torch.jit.load(str(path), map_location="cpu").eval()

    def forward(self, images_BCHW: torch.Tensor) -> torch.Tensor:
        return self.network(images_BCHW, return_features=True)


def image_batches(path: str | Path, batch_size: int) -> Iterator[np.ndarray]:
    """The uint8 (B, H, W, 3) batches of an .npz's arr_0, read in order without loading the whole array."""
    with zipfile.ZipFile(path) as archive:
        if "arr_0.npy" not in archive.namelist():
            raise ValueError(f"{path} has no arr_0 (images, uint8 N x H x W x 3)")
        with archive.open("arr_0.npy") as member:
            version = np.lib.format.read_magic(member)
            if version not in HEADERS:
                raise ValueError(f"{path}: arr_0 is an .npy of format {version}, not 1.0 or 2.0")
            shape, fortran, dtype = HEADERS[version](member)
            if dtype != np.uint8 or fortran or len(shape) != 4 or shape[-1] != 3:
                raise ValueError(f"{path}: arr_0 must be uint8 N x H x W x 3 in C order, got {dtype} {shape}")
            per_image = int(np.prod(shape[1:]))
            for start in range(0, shape[0], batch_size):
                count = min(batch_size, shape[0] - start)
                yield np.frombuffer(member.read(count * per_image), np.uint8).reshape(count, *shape[1:])


def fid(samples: str | Path, reference: str | Path, inception: str | Path, batch_size: int = 64,
        device: str | torch.device = "cpu") -> tuple[float, int, int]:
    """(FID, sample count, reference count) of two .npz files' arr_0 with the Inception file's features."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError:
        raise ValueError("nvg fid needs torchmetrics: pip install 'nvg-studio[fid]'") from None
    metric = FrechetInceptionDistance(feature=InceptionFeatures(inception), normalize=False).to(device)
    counts = {True: 0, False: 0}
    for path, real in ((reference, True), (samples, False)):
        for batch_BHWC in image_batches(path, batch_size):
            metric.update(torch.from_numpy(batch_BHWC.copy()).permute(0, 3, 1, 2).to(device), real=real)
            counts[real] += len(batch_BHWC)
    return float(metric.compute()), counts[False], counts[True]


def run(args) -> None:
    """`nvg fid SAMPLES.npz REFERENCE.npz --inception FILE`."""
    from .pipeline import default_device
    value, n_samples, n_reference = fid(args.samples, args.reference, args.inception, args.batch_size,
                                        args.device or default_device())
    print(f"FID {value:.3f} ({n_samples} samples against {n_reference} reference images, {INCEPTION_FILE} features)")
