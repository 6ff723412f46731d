from pathlib import Path

import numpy as np
import pytest
import torch

from nvg_core.cli import build_parser
from nvg_core.data.emoji import CLASSES
from nvg_core.pipeline import NVGPipeline
from nvg_core.sampling import SamplingOptions
from nvg_core.tokenizer import NVGTokenizer
from nvg_core.transformer import NVGTransformer

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "emoji_tiny.npz"


@pytest.fixture(scope="module")
def trainable_data(tmp_path_factory):
    """The fixture with new emoji ids, so that the split leaves most of it for training."""
    with np.load(FIXTURE) as data:
        arrays = {k: data[k] for k in data}
    arrays["emoji"] = np.array([f"TEST-{i}" for i in range(len(arrays["emoji"]))])
    path = tmp_path_factory.mktemp("data") / "train.npz"
    np.savez(path, **arrays)
    return path


def run(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


def test_tokenizer_then_generator_training_write_loadable_folders(trainable_data, tmp_path):
    run(["train", "tokenizer", "--data", str(trainable_data), "--out", str(tmp_path / "tok"), "--steps", "2",
         "--batch-size", "4", "--device", "cpu"])
    tokenizer = NVGTokenizer.from_pretrained(tmp_path / "tok", subfolder="tokenizer")
    assert tokenizer.spec.resolution == 64
    assert len((tmp_path / "tok" / "train_log.jsonl").read_text().splitlines()) == 2
    run(["train", "generator", "--data", str(trainable_data), "--tokenizer", str(tmp_path / "tok"),
         "--out", str(tmp_path / "gen"), "--steps", "2", "--batch-size", "4", "--half-weights", "--device", "cpu"])
    transformer = NVGTransformer.from_pretrained(tmp_path / "gen", subfolder="transformer")
    assert transformer.spec.scale_factors[1] != 4.1993  # measured on this tokenizer's canvases
    run(["train", "generator", "--data", str(trainable_data), "--tokenizer", str(tmp_path / "tok"),
         "--out", str(tmp_path / "gen2"), "--steps", "1", "--batch-size", "4", "--resume", str(tmp_path / "gen" / "raw"),
         "--branch", "structure", "--structure-class-proj", "--structure-stage-weights", "4,4,2,1,1,1,1"])
    resumed = NVGTransformer.from_pretrained(tmp_path / "gen2", subfolder="transformer")
    assert resumed.spec.use_structure_class_proj
    raw = NVGTransformer.from_pretrained(tmp_path / "gen" / "raw", subfolder="transformer", dtype=torch.float32)
    for name, p in raw.state_dict().items():  # the structure-only run left the content branch alone
        if not name.startswith("structure_"):
            assert torch.equal(resumed.state_dict()[name], p), name
    # Both generator runs used one tokenizer: the second read the first one's cached targets.
    assert len(list(trainable_data.parent.glob("*.targets-*.pt"))) == 1


def test_training_on_held_out_only_data_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no training images"):
        run(["train", "tokenizer", "--data", str(FIXTURE), "--out", str(tmp_path / "t"), "--steps", "1"])


def test_the_8x8_grid_configs_train_and_generate(trainable_data, tmp_path):
    run(["train", "tokenizer", "--data", str(trainable_data), "--out", str(tmp_path / "tok"), "--config", "emoji-f8",
         "--steps", "1", "--batch-size", "4", "--device", "cpu"])
    with pytest.raises(ValueError, match="grid is 16x16 but the tokenizer .* makes 8x8"):
        run(["train", "generator", "--data", str(trainable_data), "--tokenizer", str(tmp_path / "tok"),
             "--out", str(tmp_path / "bad"), "--steps", "1", "--batch-size", "4", "--device", "cpu"])
    run(["train", "generator", "--data", str(trainable_data), "--tokenizer", str(tmp_path / "tok"), "--config", "emoji-s8",
         "--out", str(tmp_path / "gen"), "--steps", "1", "--batch-size", "4", "--device", "cpu"])
    pipe = NVGPipeline(NVGTokenizer.from_pretrained(tmp_path / "tok", subfolder="tokenizer"),
                       NVGTransformer.from_pretrained(tmp_path / "gen", subfolder="transformer"), CLASSES, device="cpu")
    result = pipe.generate(["fruit"], seeds=[0], options=SamplingOptions(flow_steps=2))
    assert pipe.num_stages == 7 and result.images.shape == (1, 3, 64, 64)
