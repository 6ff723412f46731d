import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from nvg_core.cli import build_parser
from nvg_core.data.emoji import CLASSES
from nvg_core.pipeline import NVGPipeline
from nvg_core.sampling import SamplingOptions
from nvg_core.tokenizer import NVGTokenizer
from nvg_core.trainer import Run
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


# --------------------------------------------------------------------------------------------------
# Your own folder, checkpoints and resume
# --------------------------------------------------------------------------------------------------


def _losses(folder) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (folder / "train_log.jsonl").read_text().splitlines())
            if "loss" in r}


def _generator_args(data, tokenizer, out, *more) -> list[str]:
    return ["train", "generator", "--data", str(data), "--tokenizer", str(tokenizer), "--out", str(out),
            "--config", "tiny", "--batch-size", "4", "--log-every", "1", "--device", "cpu", *more]


def test_a_folder_dataset_trains_into_a_model_folder_the_pipeline_and_app_open(shapes_folder, tiny_tokenizer, tmp_path):
    out = tmp_path / "shapes-model"
    run(_generator_args(shapes_folder[1], tiny_tokenizer, out, "--steps", "2"))
    pipe = NVGPipeline.from_pretrained(out, device="cpu")
    assert pipe.class_names == ["bars", "discs", "squares"]  # from the data, not the config's 4
    assert pipe(class_labels=["discs"], seeds=[0], options=SamplingOptions(flow_steps=2)).images[0].size == (16, 16)
    card = (out / "MODEL_CARD.md").read_text()
    assert "library_name: diffusers" in card and "bars, discs, squares" in card and "image folder dataset" in card
    from app.models import peek
    assert peek(str(out)).class_names == ["bars", "discs", "squares"]


def test_the_tokenizer_config_follows_the_image_size_and_a_wrong_one_is_refused(shapes_folder, tmp_path):
    from nvg_core.train import tokenizer_config
    assert tokenizer_config(None, 64).resolution == 64 and tokenizer_config(None, 256).resolution == 256
    assert tokenizer_config(None, 128).grid_size == 16
    with pytest.raises(ValueError, match="no default tokenizer config for 16 px"):
        run(["train", "tokenizer", "--data", str(shapes_folder[1]), "--out", str(tmp_path), "--steps", "1"])
    with pytest.raises(ValueError, match="'emoji-f4' is for 64 px images but the data has 16 px"):
        run(["train", "tokenizer", "--data", str(shapes_folder[1]), "--out", str(tmp_path), "--config", "emoji-f4"])


def test_a_run_stopped_by_sigterm_resumes_with_the_losses_of_an_uninterrupted_run(shapes_folder, tiny_tokenizer,
                                                                                  tmp_path, monkeypatch):
    run(_generator_args(shapes_folder[1], tiny_tokenizer, tmp_path / "whole", "--steps", "5"))
    log = Run.log

    def log_then_terminate(self, step, **values):
        log(self, step, **values)
        if step == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # as a cluster's scheduler would, mid-run

    monkeypatch.setattr(Run, "log", log_then_terminate)
    run(_generator_args(shapes_folder[1], tiny_tokenizer, tmp_path / "cut", "--steps", "5"))
    assert sorted(_losses(tmp_path / "cut")) == [0, 1]  # stopped after step 1, checkpoint written
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["step"] == 2
    monkeypatch.setattr(Run, "log", log)
    run(_generator_args(shapes_folder[1], tiny_tokenizer, tmp_path / "cut", "--steps", "5",
                        "--resume", str(tmp_path / "cut")))
    whole, resumed = _losses(tmp_path / "whole"), _losses(tmp_path / "cut")
    assert sorted(resumed) == [0, 1, 2, 3, 4]
    assert [resumed[s] for s in (2, 3, 4)] == pytest.approx([whole[s] for s in (2, 3, 4)], rel=1e-6)
    a = NVGTransformer.from_pretrained(tmp_path / "whole", subfolder="transformer")
    b = NVGTransformer.from_pretrained(tmp_path / "cut", subfolder="transformer")
    for name, p in a.state_dict().items():  # the EMA weights agree too
        torch.testing.assert_close(b.state_dict()[name], p, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_of_one_part_is_not_resumed_as_another(shapes_folder, tiny_tokenizer, tmp_path):
    with pytest.raises(ValueError, match="is a checkpoint of the tokenizer, not of the generator"):
        run(_generator_args(shapes_folder[1], tiny_tokenizer, tmp_path / "g", "--steps", "1", "--resume", str(tiny_tokenizer)))


def test_a_global_batch_that_does_not_split_among_the_processes_is_refused():
    from nvg_core.distributed import Processes
    with pytest.raises(ValueError, match="--batch-size 5 is the global batch and must divide evenly among 2"):
        Processes(0, 2, torch.device("cpu")).local_batch(5)


def test_loss_logs_plot_to_a_png(shapes_folder, tiny_tokenizer, tmp_path):
    run(["train", "plot", str(tiny_tokenizer), "--out", str(tmp_path / "curve.png")])
    from PIL import Image
    with Image.open(tmp_path / "curve.png") as image:
        assert image.size[0] >= 600
    with pytest.raises(SystemExit, match="no loss log at"):
        run(["train", "plot", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x.png")])


def test_the_evaluator_trains_and_resumes_from_its_checkpoint(trainable_data, tmp_path):
    args = ["train", "evaluator", "--data", str(trainable_data), "--out", str(tmp_path), "--batch-size", "8",
            "--log-every", "1", "--device", "cpu"]
    run(args + ["--steps", "2"])
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 2
    run(args + ["--steps", "3", "--resume", str(tmp_path)])
    steps = [json.loads(line).get("step") for line in (tmp_path / "logs" / "evaluator.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 1, 2, 2]  # steps 0-1, the held-out accuracy line, step 2 after resuming, accuracy
    assert (tmp_path / "evaluator" / "config.json").is_file()


def test_the_prepared_continuation_of_the_bundled_model_runs_one_step_and_compares_both_evaluations(trainable_data, tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("continue_bundled", Path(__file__).parents[1] / "bench" / "continue_bundled.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--minutes", "0", "--out", str(tmp_path), "--data", str(trainable_data), "--batch-size", "4",
                 "--num-samples", "4"])
    assert [json.loads(line)["step"] for line in (tmp_path / "model" / "train_log.jsonl").read_text().splitlines()] == [0]
    continued = NVGPipeline.from_pretrained(tmp_path / "model", device="cpu")
    shipped = NVGPipeline.from_pretrained(device="cpu")
    assert continued.default_options == shipped.default_options  # the shipped sampling defaults carry over
    assert continued.transfer_options == shipped.transfer_options
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    shipped_eval = json.loads((tmp_path / "eval_shipped.json").read_text())
    assert verdict["fd"]["shipped"] == shipped_eval["fd"] and isinstance(verdict["better"], bool)
    assert verdict["better"] == (verdict["fd"]["continued"] < verdict["fd"]["shipped"]
                                 and verdict["class_accuracy"]["continued"] >= verdict["class_accuracy"]["shipped"])
