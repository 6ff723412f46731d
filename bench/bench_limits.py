"""The cost estimate against what a run takes, and refusals through the API: `python bench/bench_limits.py
[--batches 1 8 64 256] [--model DIR] [--api]`.

For each batch size, a fresh subprocess loads the model (default: the bundled one), warms up with one
image, then runs one generation of the batch (the model's default options, seeds 0..B-1) and reports its
wall time and its peak resident memory above the memory held before the run (ru_maxrss after minus RSS
before), beside nvg_core.limits.estimate_cost for the same run. Run it on a quiet machine: the times
are the device's, the estimate is the model's FLOPs at DEVICE_FLOPS.

With --api it also serves the page (in this process, the bundled model, the server's limits) and times,
through gradio_client, the refusal of three uploaded PNGs whose recipes ask for 5,000 images, 10,000,000
flow steps, and an honest library run of 64 images (over the server's 8), then one normal generation.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def one_run(model: str | None, batch: int) -> dict:
    """Measure one run of `batch` images in this process (called in a fresh subprocess)."""
    sys.path.insert(0, str(ROOT))
    import torch

    from nvg_core.pipeline import NVGPipeline

    pipe = NVGPipeline.from_pretrained(model, device="cpu")
    pipe.generate(["0"], seeds=[0])  # warm-up: kernels, allocator
    before = rss_bytes()
    start = time.perf_counter()
    pipe.generate([0] * batch, seeds=list(range(batch)))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    cost = pipe.run_cost(batch)
    return {"batch": batch, "seconds": seconds, "peak_bytes": peak, "estimated_seconds": cost.seconds,
            "estimated_peak_bytes": cost.peak_bytes, "threads": torch.get_num_threads()}


def api_refusals(model: str | None) -> None:
    """Time the refusal of forged recipes through the HTTP API, then a normal generation."""
    import tempfile

    from gradio_client import Client, handle_file

    sys.path.insert(0, str(ROOT))
    from app.handlers import advanced_values
    from app.ui import MAX_FILE_SIZE, build_demo
    from nvg_core import recipe
    from nvg_core.pipeline import NVGPipeline

    pipe = NVGPipeline.from_pretrained(model, device="cpu")
    demo = build_demo(pipe)
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, max_file_size=MAX_FILE_SIZE)
    folder = Path(tempfile.mkdtemp(prefix="nvg_limits_"))
    image = pipe(["fruit"], seeds=[1]).images[0]
    forged = {"5,000 images": lambda run: run.update(classes_BS=run["classes_BS"] * 5000, seeds=list(range(5000))),
              "10,000,000 flow steps": lambda run: run["options"].update(flow_steps=10_000_000),
              "64 images (an honest library batch)": lambda run: run.update(classes_BS=run["classes_BS"] * 64,
                                                                            seeds=list(range(64)))}
    client = Client(url, verbose=False)
    made = recipe.read_recipe(image)
    for name, edit in forged.items():
        data = made.to_dict()
        edit(data["run"])
        image.info[recipe.PNG_KEY] = json.dumps(data)
        path = folder / "forged.png"
        recipe.save_png(image, path)
        start = time.perf_counter()
        try:
            client.predict(handle_file(str(path)), api_name="/open_image")
            answer = "accepted (!)"
        except Exception as error:
            answer = str(error).splitlines()[-1][:150]
        print(f"{name}: {time.perf_counter() - start:.2f} s: {answer}")
    start = time.perf_counter()
    client.predict("fruit", 0, 1, *advanced_values(pipe.default_options), api_name="/generate")
    print(f"then one image generated normally in {time.perf_counter() - start:.2f} s")
    demo.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--model", default=None, help="a model folder (default: the bundled model)")
    parser.add_argument("--api", action="store_true", help="also time forged recipes refused through the HTTP API")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the subprocess's own run
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_run(args.model, args.one)))
        return
    print("batch  measured s  estimated s  measured peak MB  estimated peak MB")
    for batch in args.batches:
        command = [sys.executable, __file__, "--one", str(batch)] + (["--model", args.model] if args.model else [])
        row = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(f"{batch:5d}  {row['seconds']:10.2f}  {row['estimated_seconds']:11.2f}  "
              f"{row['peak_bytes'] / 2**20:16.0f}  {row['estimated_peak_bytes'] / 2**20:17.0f}", flush=True)
    print(f"({row['threads']} torch threads)")
    if args.api:
        api_refusals(args.model)


if __name__ == "__main__":
    main()
