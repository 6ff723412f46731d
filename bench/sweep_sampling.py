"""Class accuracy of a model's samples under several sampling settings, judged by the frozen evaluator.

    python bench/sweep_sampling.py                         # the bundled model, 4 images per class
    python bench/sweep_sampling.py --per-class 2 --flow-steps 1 2 4 8
    python bench/sweep_sampling.py --per-class 2 --flow-steps 2 --random-transformer   # the untrained floor

Every setting starts from the model's sampling defaults (model_index.json) and changes only what it names.
Every setting sees the same classes and seeds (image i: class i mod 32, seed i), so differences come from
the setting. With 128 images one image is 0.008 of accuracy; treat gaps under about 0.05 as noise.
"""

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from nvg_core.evaluate import generate_images, load_evaluator
from nvg_core.metrics import embed_images
from nvg_core.pipeline import BUNDLED_MODEL, NVGPipeline
from nvg_core.sampling import SamplingOptions
from nvg_core.transformer import NVGTransformer


def class_accuracy(pipe: NVGPipeline, evaluator, options: SamplingOptions, per_class: int) -> float:
    """Fraction of images (class i mod C, seed i) that the evaluator assigns to the requested class."""
    n = per_class * len(pipe.class_names)
    classes = np.arange(n) % len(pipe.class_names)
    _, probs = embed_images(evaluator, generate_images(pipe, classes, np.arange(n), options))
    return float((probs.argmax(1) == classes).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=BUNDLED_MODEL)
    parser.add_argument("--per-class", type=int, default=4)
    parser.add_argument("--flow-steps", type=int, nargs="+", default=[1, 2, 3, 4, 8])
    parser.add_argument("--gumbel", action="store_true", help="also try Gumbel (sampled) splits at each setting")
    parser.add_argument("--random-transformer", action="store_true",
                        help="replace the transformer by a random one of the same config (seed 0)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    pipe = NVGPipeline.from_pretrained(args.model, device="cpu")
    if args.random_transformer:
        torch.manual_seed(0)
        pipe.transformer = NVGTransformer.from_spec(pipe.transformer.spec).eval()
    evaluator = load_evaluator(BUNDLED_MODEL)
    which = " (random transformer)" if args.random_transformer else ""
    print(f"model {pipe.name}{which}: {args.per_class * len(pipe.class_names)} images per setting")
    for steps in args.flow_steps:
        for gumbel in ([False, True] if args.gumbel else [False]):
            options = replace(pipe.default_options, flow_steps=steps, gumbel_split=gumbel)
            start = time.perf_counter()
            accuracy = class_accuracy(pipe, evaluator, options, args.per_class)
            print(f"flow_steps {steps:2d} gumbel {gumbel!s:5}: class accuracy {accuracy:.3f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
