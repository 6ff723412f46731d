"""Continue the bundled model's training for a time budget, then measure it against the shipped weights.

    python bench/continue_bundled.py --minutes 12 --out runs/continued          # on a GPU
    python bench/continue_bundled.py --minutes 0 --batch-size 4 --num-samples 4 --out /tmp/c   # one step (a check)

It resumes the generator from weights/emoji32 with its recipe (docs/training.md, "Continuing it": global
batch 256, lr 2.5e-4 after 100 warm-up steps, bf16 autocast on CUDA, fp16 weights), stopping when the budget
is spent (--minutes 0: after one step), then runs `nvg eval` (the same evaluator, seeds and sample count) on
the shipped model and on the continued one. OUT gets model/ (a complete model folder with the shipped
sampling defaults), eval_shipped.json, eval_continued.json and verdict.json, which says whether the
continued model is better: a lower FD-EmojiNet and a class accuracy at least as high. Ship it only then.
Needs the emoji data (`nvg data emoji --size 64 --out data/emoji64.npz`; 41 MB, copy it to a machine
without npm); the first run tokenizes it into a 4.5 GB cache beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from nvg_core.cli import main as nvg
from nvg_core.data.emoji import load_emoji_dataset
from nvg_core.evaluate import evaluate, load_evaluator
from nvg_core.pipeline import BUNDLED_MODEL, NVGPipeline

COMPARED = ("fd", "kid", "precision", "recall", "class_accuracy")


def continue_training(args: argparse.Namespace) -> Path:
    """The bundled recipe, resumed from the shipped weights for --minutes; returns the new model folder."""
    folder = args.out / "model"
    nvg(["train", "generator", "--data", str(args.data), "--tokenizer", str(BUNDLED_MODEL), "--resume",
         str(BUNDLED_MODEL), "--out", str(folder), "--steps", str(args.steps), "--batch-size", str(args.batch_size),
         "--lr", "2.5e-4", "--warmup", "100", "--half-weights", "--seed", str(args.seed), "--max-minutes",
         str(args.minutes), "--log-every", "10"] + (["--bf16"] if torch.cuda.is_available() else []))
    return folder


def measure(folder: Path, args: argparse.Namespace) -> dict:
    """`nvg eval` of one model folder with the shipped evaluator and fixed seeds."""
    pipe = NVGPipeline.from_pretrained(folder)
    evaluator = load_evaluator(BUNDLED_MODEL).to(pipe.device)
    return evaluate(pipe, evaluator, load_emoji_dataset(args.data), args.num_samples, pipe.default_options, seed=0)


def verdict(shipped: dict, continued: dict) -> dict:
    """Better means a lower FD-EmojiNet and a class accuracy at least as high."""
    better = continued["fd"] < shipped["fd"] and continued["class_accuracy"] >= shipped["class_accuracy"]
    return {"better": better, **{key: {"shipped": shipped[key], "continued": continued[key]} for key in COMPARED}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, required=True, help="training budget (0: one step)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("data/emoji64.npz"))
    parser.add_argument("--steps", type=int, default=3000, help="the schedule's length (the budget may end it first)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-samples", type=int, default=256, help="generated images per evaluation")
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args(argv)
    folder = continue_training(args)
    reports = {"shipped": measure(BUNDLED_MODEL, args), "continued": measure(folder, args)}
    for name, report in reports.items():
        (args.out / f"eval_{name}.json").write_text(json.dumps(report, indent=1))
    result = verdict(reports["shipped"], reports["continued"])
    (args.out / "verdict.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    print(f"the continued model in {folder} is {'better' if result['better'] else 'not better'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
