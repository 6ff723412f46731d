"""Test-wide settings: no network, CPU, deterministic torch threads."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import subprocess
import sys

import pytest
import torch

from nvg_core.pipeline import NVGPipeline
from nvg_core.sampling import SamplingOptions
from nvg_core.tokenizer import TOKENIZER_CONFIGS, NVGTokenizer
from nvg_core.transformer import TRANSFORMER_CONFIGS, NVGTransformer

TINY_CLASSES = ["apple", "boat", "cat", "dog"]


def make_tiny_pipeline(seed: int = 0, name: str = "tiny") -> NVGPipeline:
    """A tiny random model: 16 px images, a 4x4 grid (5 stages), 4 classes. Fast; not trained."""
    torch.manual_seed(seed)
    return NVGPipeline(NVGTokenizer.from_spec(TOKENIZER_CONFIGS["tiny"]), NVGTransformer.from_spec(TRANSFORMER_CONFIGS["tiny"]),
                       TINY_CLASSES, device="cpu", default_options=SamplingOptions(flow_steps=3), name=name)


def torchrun(args: list[str], timeout: float = 180) -> str:
    """Run `nvg ARGS` in 2 CPU processes under torchrun, one thread each; its stderr (failing on an error)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "nvg_core.cli", *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


@pytest.fixture(scope="session")
def tiny_pipeline() -> NVGPipeline:
    return make_tiny_pipeline()


@pytest.fixture(scope="session")
def shapes_folder(tmp_path_factory):
    """An image folder of three classes (red squares, green discs, blue bars; 8 images each, varied in
    size and place) and its folder dataset at 16 px, for training the tiny configs: (folder, dataset)."""
    import numpy as np
    from PIL import Image, ImageDraw

    from nvg_core.data.folder import build_folder_dataset
    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    for name, colour in (("squares", (220, 40, 40)), ("discs", (40, 180, 60)), ("bars", (40, 60, 220))):
        (root / "images" / name).mkdir(parents=True)
        for i in range(8):
            image = Image.new("RGB", (48, 48), "white")
            x, y, r = (int(v) for v in rng.integers([8, 8, 6], [32, 32, 14]))
            box = {"squares": (x, y, x + r, y + r), "discs": (x, y, x + r, y + r), "bars": (x, 4, x + r // 2, 44)}[name]
            (ImageDraw.Draw(image).ellipse if name == "discs" else ImageDraw.Draw(image).rectangle)(box, fill=colour)
            image.save(root / "images" / name / f"{i}.png")
    build_folder_dataset(root / "images", root / "dataset", size=16)
    return root / "images", root / "dataset"


@pytest.fixture(scope="session")
def tiny_tokenizer(shapes_folder, tmp_path_factory):
    """A tiny tokenizer trained for 2 steps on the shapes folder dataset (a folder to read, not to write)."""
    from nvg_core.cli import main
    out = tmp_path_factory.mktemp("tok")
    main(["train", "tokenizer", "--data", str(shapes_folder[1]), "--out", str(out), "--config", "tiny", "--steps", "2",
          "--batch-size", "4", "--device", "cpu"])
    return out
