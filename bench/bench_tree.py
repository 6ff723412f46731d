"""Benchmark build_tree: milliseconds per 16x16 image (fp32, CPU unless --device) at several batch sizes.

Usage: python bench/bench_tree.py [--channels 32] [--repeats 20] [--device cpu]
"""

import argparse
import time

import torch

from nvg_core.structure import build_tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    for batch in (1, 8, 64):
        latent = torch.randn(batch, 256, args.channels, device=args.device)
        build_tree(latent)  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            build_tree(latent)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        times.sort()
        median = times[len(times) // 2]
        print(f"batch {batch:3d}: {median * 1e3:8.2f} ms per call, {median * 1e3 / batch:6.2f} ms per image (median of {args.repeats})")


if __name__ == "__main__":
    main()
