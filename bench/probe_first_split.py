"""Does the class reach the structure branch? The figures the class-aware structure experiments compare (model card).

    python bench/probe_first_split.py                                   # the bundled model
    python bench/probe_first_split.py --transformer runs/expB --early-guidance 1 4   # trained weights, two settings

Per transformer (in front of the bundled tokenizer) and per early structure guidance g (the structure
guidance of stages 0 and 1; later stages keep the default ramp):
- split loss: flow loss on the bit each stage decides, held-out images, true vs null class (stages 0, 1);
- first-split agreement: share of positions on the same side of the first split for another class (same
  noise) and for other noise (same class); random halvings give 0.5;
- class accuracy: the frozen evaluator's verdict on image i = (class i mod 32, seed i), i < 32 * per_class.
With 128 images one image is 0.008 of accuracy; gaps under about 0.05 are noise.
"""

import argparse
import itertools
import time
from dataclasses import replace

import numpy as np
import torch

from nvg_core.data.emoji import load_emoji_dataset, split_by_emoji
from nvg_core.evaluate import _spread, first_split_agreement, generate_images, load_evaluator, split_loss_by_class
from nvg_core.metrics import embed_images
from nvg_core.pipeline import BUNDLED_MODEL, NVGPipeline
from nvg_core.sampling import official_options
from nvg_core.transformer import NVGTransformer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transformer", nargs="+", default=[str(BUNDLED_MODEL)], help="folders with transformer weights")
    parser.add_argument("--early-guidance", type=float, nargs="+", default=[1.0])
    parser.add_argument("--early-content-guidance", type=float, nargs="+", default=[None],
                        help="content guidance of stages 0 and 1 (default: the ramp's 1 and 1.3125)")
    parser.add_argument("--per-class", type=int, default=4, help="images per class for class accuracy (0: skip it)")
    parser.add_argument("--boost-stages", type=int, default=2, help="how many early stages the early guidances cover")
    parser.add_argument("--flow-steps", type=int, default=2)
    parser.add_argument("--data", default="data/emoji64.npz")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    pipe = NVGPipeline.from_pretrained(BUNDLED_MODEL, device="cpu")
    evaluator = load_evaluator(BUNDLED_MODEL)
    data = load_emoji_dataset(args.data)
    _, held_idx = split_by_emoji(data.emoji)
    held_idx = _spread(held_idx[data.label[held_idx] >= 0], 64)
    n = args.per_class * len(pipe.class_names)
    classes, seeds = np.arange(n) % len(pipe.class_names), np.arange(n)
    for folder in args.transformer:
        pipe.transformer = NVGTransformer.from_pretrained(folder, subfolder="transformer", dtype=torch.float32).eval()
        loss = split_loss_by_class(pipe, data.images[held_idx], data.label[held_idx].astype(int), seed=0)
        print(f"{folder}: split loss true/null " + ", ".join(
            f"stage {s} {v['true_class']:.4f}/{v['null_class']:.4f}" for s, v in loss.items()), flush=True)
        for g, c in itertools.product(args.early_guidance, args.early_content_guidance):
            authors = official_options(pipe.num_stages)  # the authors' ramps, boosted below
            guidance, content = list(authors.structure_guidance), list(authors.content_guidance)
            k = args.boost_stages
            guidance[:k] = [g] * k
            content[:k] = content[:k] if c is None else [c] * k
            options = replace(authors, flow_steps=args.flow_steps, structure_guidance=guidance, content_guidance=content)
            start = time.perf_counter()
            agree = first_split_agreement(pipe, np.arange(64) % 32, np.arange(64), options)
            accuracy = float("nan")
            if n:
                _, probs = embed_images(evaluator, generate_images(pipe, classes, seeds, options))
                accuracy = float((probs.argmax(1) == classes).mean())
            print(f"  stages < {k}: structure guidance {g:g}, content guidance {c}: first split same side, other class {agree['other_class']:.3f}, other "
                  f"noise {agree['other_noise']:.3f}; class accuracy {accuracy:.3f} ({time.perf_counter() - start:.0f} s)",
                  flush=True)


if __name__ == "__main__":
    main()
