"""Time and memory of reading large uploads: sketches projected to stage 2, references made model pixels.

Usage: python bench/bench_uploads.py [--repo DIR]

Each case runs in a fresh interpreter and prints its wall time and its peak RSS over the RSS before it
started (Linux: the peak is reset through /proc/self/clear_refs). --repo measures another checkout (an older commit in a git worktree): where it
has no nvg_core.sketch, its app's numpy sketch snapping is measured instead, as the app ran it.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from nvg_core.images import load_image, to_pixels, to_rgb
kind, path = sys.argv[2], sys.argv[3]
if kind == "reference":
    run = lambda: to_pixels(path, 64)
else:
    import os
    if os.path.exists(os.path.join(sys.argv[1], "nvg_core", "sketch.py")):
        from nvg_core.sketch import project_sketch
        run = lambda: project_sketch(path, 2)
    else:  # an older checkout: the app's sketch handler on the decoded RGB array
        from app.handlers import sketch_regions
        from nvg_core.structure import project
        run = lambda: project(sketch_regions(np.asarray(to_rgb(load_image(path)))), 2)
def status(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1])
open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the current RSS
base = status("VmRSS:")
start = time.perf_counter()
try:
    run()
    outcome = "ok"
except ValueError as error:
    outcome = f"refused: {str(error)[:60]}"
seconds = time.perf_counter() - start
print(f"{seconds:.2f} {(status('VmHWM:') - base) / 1024:.0f} {outcome}")
"""


def sketch_file(folder: Path, width: int, height: int, suffix: str) -> Path:
    """A layout in palette colours at the given size: white paper, a red disc, a blue band."""
    canvas = np.full((height, width, 3), 255, np.uint8)
    cv2.circle(canvas, (width // 3, height // 3), min(width, height) // 5, (75, 25, 230), -1, cv2.LINE_AA)  # BGR
    cv2.rectangle(canvas, (0, 2 * height // 3), (width, height), (216, 99, 67), -1)
    path = folder / f"sketch_{width}x{height}.{suffix}"
    cv2.imwrite(str(path), canvas)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="nvg_uploads_"))
    cases = [("sketch", sketch_file(folder, 3000, 4000, "png")), ("sketch", sketch_file(folder, 6000, 4000, "jpg")),
             ("sketch", sketch_file(folder, 8000, 5000, "png")), ("sketch", sketch_file(folder, 12000, 12000, "png")),
             ("reference", sketch_file(folder, 6000, 4000, "jpg"))]
    print(f"{args.repo.resolve()}: case, file size, wall time, peak RSS added, outcome")
    for kind, path in cases:
        out = subprocess.run([sys.executable, "-c", PROBE, str(args.repo.resolve()), kind, str(path)],
                             capture_output=True, text=True, env={"OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"})
        seconds, megabytes, outcome = (out.stdout.strip().split(maxsplit=2) + ["?", "?", out.stderr.strip()[-80:]])[:3]
        print(f"  {kind:<9} {path.name:<24} {path.stat().st_size / 1e6:6.2f} MB {seconds:>7} s {megabytes:>6} MB  {outcome}")


if __name__ == "__main__":
    main()
