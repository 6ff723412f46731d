"""How the bundled model's cost grows with the work: time per image against batch size and flow steps, and
the time of a lock-and-regenerate from stage k against a full generation.

Usage: python bench/bench_scaling.py [--model DIR] [--batch-sizes 1 2 4 8 16] [--flow-steps 1 2 4 8] [--repeats 2] [--compile]

Every setting starts from the model's sampling defaults (guidance included) and is timed after one warm-up
run (best of --repeats). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from nvg_core.benchmark import seconds_of
from nvg_core.pipeline import NVGPipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a model folder (default: the bundled model)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--flow-steps", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="compile the blocks first (NVGTransformer.compile_blocks); "
                        "each setting's warm-up run compiles its shapes, untimed")
    args = parser.parse_args()
    pipe = NVGPipeline.from_pretrained(args.model)
    if args.compile:
        pipe.transformer.compile_blocks()
    defaults = pipe.default_options
    print(f"model {pipe.name} on {pipe.device}, {torch.get_num_threads()} threads, fp32, its default guidance"
          f"{', compiled blocks' if args.compile else ''}; "
          f"best of {args.repeats} after a warm-up")

    print("\nseconds per image (rows: flow steps; columns: batch size)")
    print("steps " + "".join(f"{b:>9d}" for b in args.batch_sizes))
    for steps in args.flow_steps:
        options = replace(defaults, flow_steps=steps)
        row = [seconds_of(lambda: pipe.generate([0] * b, seeds=list(range(b)), options=options), args.repeats) / b
               for b in args.batch_sizes]
        print(f"{steps:5d} " + "".join(f"{s:9.3f}" for s in row) + ("   <- the model's default" if steps == defaults.flow_steps else ""))

    source = pipe.generate([0], seeds=[0])
    full = seconds_of(lambda: pipe.generate([0], seeds=[1]), args.repeats)
    print(f"\nlock stages 0..k-1 and regenerate from stage k, 1 variation (a full generation: {full:.3f} s)")
    print("    k  seconds  share of full  share of stages left")
    for k in range(1, pipe.num_stages):
        seconds = seconds_of(lambda: pipe.regenerate(source, from_stage=k, num_variations=1, seeds=[1]), args.repeats)
        print(f"{k:5d}  {seconds:7.3f}  {seconds / full:13.2f}  {(pipe.num_stages - k) / pipe.num_stages:20.2f}")


if __name__ == "__main__":
    main()
