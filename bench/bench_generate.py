"""Sampling benchmark (same as `nvg bench`): per-stage and whole-image latency, peak memory, FLOPs, GFLOP/s.

Usage: python bench/bench_generate.py [--model DIR | --config emoji|official-d16] [--flow-steps 10]
       [--batch-sizes 1 8] [--repeats 2] [--device cpu]
"""

import argparse

from nvg_core.benchmark import add_arguments, run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    run(parser.parse_args())
