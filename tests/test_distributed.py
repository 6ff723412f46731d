"""Training under torchrun: 2 CPU processes (gloo) give the single-process run with the same global batch.

Tolerance: losses within 1e-5 relative and weights within 1e-5 absolute (the processes sum their gradients
in another order than one process does; the random numbers are the same by construction)."""

import json
import os
import re

import numpy as np
import pytest
import torch

from conftest import torchrun
from nvg_core.cli import main
from nvg_core.pipeline import NVGPipeline
from nvg_core.transformer import NVGTransformer

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without torch.distributed")


def _args(data, tokenizer, out, *more) -> list[str]:
    """Large steps (lr 1e-2 from the first step): a process that missed the others' gradients would drift."""
    return ["train", "generator", "--data", str(data), "--tokenizer", str(tokenizer), "--out", str(out), "--config",
            "tiny", "--steps", "4", "--batch-size", "8", "--lr", "1e-2", "--warmup", "1", "--log-every", "1",
            "--device", "cpu", *more]


def _losses(folder) -> list[float]:
    return [json.loads(line)["loss"] for line in (folder / "train_log.jsonl").read_text().splitlines()]


def test_two_processes_train_as_one_with_the_same_global_batch_and_only_rank_0_writes(shapes_folder, tiny_tokenizer, tmp_path):
    data = shapes_folder[1]
    main(_args(data, tiny_tokenizer, tmp_path / "one"))
    stderr = torchrun(_args(data, tiny_tokenizer, tmp_path / "two"))
    assert _losses(tmp_path / "two") == pytest.approx(_losses(tmp_path / "one"), rel=1e-5)
    assert len(re.findall(r"^\[1/4\]", stderr, flags=re.M)) == 1  # one progress line: rank 0's
    assert torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)["world"] == 2
    one = NVGTransformer.from_pretrained(tmp_path / "one" / "raw", subfolder="transformer").state_dict()
    two = NVGTransformer.from_pretrained(tmp_path / "two" / "raw", subfolder="transformer").state_dict()
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-5
    assert NVGPipeline.from_pretrained(tmp_path / "two", device="cpu").class_names == ["bars", "discs", "squares"]


def test_a_run_checkpointed_by_one_process_resumes_on_two(shapes_folder, tiny_tokenizer, tmp_path):
    data = shapes_folder[1]
    main(_args(data, tiny_tokenizer, tmp_path / "whole"))
    main(_args(data, tiny_tokenizer, tmp_path / "cut", "--max-minutes", "0"))  # stops after its first step
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["step"] == 1
    stderr = torchrun(_args(data, tiny_tokenizer, tmp_path / "cut", "--resume", str(tmp_path / "cut")))
    assert "resumed the generator at step 1 (saved by 1 process(es), now 2)" in stderr
    assert _losses(tmp_path / "cut") == pytest.approx(_losses(tmp_path / "whole"), rel=1e-5)


def test_the_tokenizer_and_the_evaluator_train_under_torchrun(shapes_folder, tmp_path):
    from nvg_core.tokenizer import NVGTokenizer
    fixture = os.path.join(os.path.dirname(__file__), "fixtures", "emoji_tiny.npz")
    torchrun(["train", "tokenizer", "--data", str(shapes_folder[1]), "--out", str(tmp_path / "tok"), "--config", "tiny",
               "--steps", "2", "--batch-size", "4", "--refresh-every", "1", "--device", "cpu"])
    assert NVGTokenizer.from_pretrained(tmp_path / "tok", subfolder="tokenizer").spec.resolution == 16
    emoji = tmp_path / "emoji.npz"  # the fixture with new emoji ids, so that its training split is not empty
    with np.load(fixture) as data:
        np.savez(emoji, **{**{k: data[k] for k in data}, "emoji": np.array([f"T{i}" for i in range(len(data["emoji"]))])})
    torchrun(["train", "evaluator", "--data", str(emoji), "--out", str(tmp_path / "eval"), "--steps", "2",
               "--batch-size", "8", "--device", "cpu"])
    assert torch.load(tmp_path / "eval" / "checkpoint.pt", weights_only=True)["world"] == 2
    assert (tmp_path / "eval" / "evaluator" / "config.json").is_file()
