"""`nvg sample` on 1 and 2 processes: images per second, peak resident memory, and whether the arrays agree.

Usage: python bench/bench_sample.py [--model DIR_OR_ID] [--per-class 8] [--batch-size 32] [--processes 1 2]

Each run is `nvg sample` in a fresh process (torchrun --standalone for 2 or more, gloo on the CPU, one torch
thread per process when there are several, the machine's threads for one), timed from start to the merged
.npz, with the peak resident memory of its largest process (getrusage in a measuring process). Run it on a quiet
machine, and once per --per-class to see whether memory grows with the number of images.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


# Runs its arguments as a command and prints the peak RSS of the largest process that command started: a
# fresh measuring process for each run, so one run's peak does not hide another's.
MEASURED = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def sample(processes: int, args, out: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one `nvg sample` run into OUT.npz."""
    command = ["-m", "nvg_core.cli", "sample", "--per-class", str(args.per_class), "--batch-size",
               str(args.batch_size), "--out", str(out), "--device", "cpu", *(["--model", args.model] if args.model else [])]
    if processes > 1:
        command = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), *command]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **({"OMP_NUM_THREADS": "1"} if processes > 1 else {})}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURED, sys.executable, *command], env=env, check=True,
                          capture_output=True, text=True)
    return time.perf_counter() - start, int(done.stdout.split()[-1]) / 1024  # ru_maxrss: KB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a model folder or hub id (default: the bundled model)")
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    arrays = {}
    with tempfile.TemporaryDirectory() as folder:
        for processes in args.processes:
            out = Path(folder) / f"p{processes}"
            seconds, peak_mb = sample(processes, args, out)
            with np.load(out.with_suffix(".npz")) as npz:
                arrays[processes] = npz["arr_0"]
            n = len(arrays[processes])
            print(f"{processes} process{'es' if processes > 1 else ''}: {n} images in {seconds:.1f} s "
                  f"({n / seconds:.2f} images/s, start-up included), peak RSS {peak_mb:.0f} MB (its largest process)",
                  flush=True)
    first = arrays[args.processes[0]]
    print("arrays identical on " + ", ".join(map(str, args.processes)) + " processes: "
          + str(all(np.array_equal(first, a) for a in arrays.values())))


if __name__ == "__main__":
    main()
