"""Generator training speed in one process against torchrun's processes, on the same cores.

    python bench/bench_distributed.py --data data/emoji64.npz --steps 30 --batch-size 32

Runs `nvg train generator` (the bundled config, resumed from the shipped weights, the same global batch)
once in 1 process with --threads threads and once under torchrun with --processes processes of
threads/processes threads each, and prints images/s of each: the median of the log's figures after the
first --warm-up entries (tokenizing the data, or reading its cache, comes before the first step and is not
counted). Run it on an otherwise quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BUNDLED = Path(__file__).resolve().parents[1] / "weights" / "emoji32"


def images_per_s(processes: int, threads: int, args: argparse.Namespace, out: Path) -> float:
    """Median images/s of one run (log entries after the warm-up)."""
    train = ["train", "generator", "--data", str(args.data), "--tokenizer", str(BUNDLED), "--resume", str(BUNDLED),
             "--out", str(out), "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--log-every", "1",
             "--device", "cpu"]
    launcher = [sys.executable, "-m", "nvg_core.cli"] if processes == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), "-m", "nvg_core.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    subprocess.run(launcher + train, env=env, check=True, stdout=subprocess.DEVNULL)
    rates = [json.loads(line)["images_per_s"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    return statistics.median(rates[args.warm_up:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/emoji64.npz"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32, help="the global batch of both runs")
    parser.add_argument("--threads", type=int, default=2, help="cores in total")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--warm-up", type=int, default=5, help="log entries left out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = images_per_s(1, args.threads, args, Path(tmp) / "one")
        many = images_per_s(args.processes, max(1, args.threads // args.processes), args, Path(tmp) / "many")
    print(f"1 process x {args.threads} threads: {one:.1f} images/s")
    print(f"{args.processes} processes x {max(1, args.threads // args.processes)} thread(s): {many:.1f} images/s "
          f"({many / one:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
