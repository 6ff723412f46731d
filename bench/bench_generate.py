"""Sampling benchmark (same as `nvg bench`): per-stage and whole-image latency, peak memory, FLOPs, GFLOP/s.

Usage: python bench/bench_generate.py [--model DIR | --config emoji|official-d16] [--flow-steps 10]
       [--batch-sizes 1 8] [--repeats 2] [--device cpu]
"""

import argparse

from nvg_core.cli import bench_arguments

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bench_arguments(parser)
    args = parser.parse_args()
    args.run(args)
