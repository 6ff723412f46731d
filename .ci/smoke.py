"""Smoke test of an installed wheel, run by .ci/package in a fresh virtual environment outside the clone:
the packages import from site-packages, the bundled model makes an image from Python and from `nvg`, and
`nvg-studio` answers --help and serves the page with the bundled model card, data credits and examples."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import diffusers
import nvg_core
import nvg_studio
from nvg_core.pipeline import BUNDLED_MODEL, NVGPipeline

repo = Path(sys.argv[1]).resolve()
for name, module in (("nvg_core", nvg_core), ("nvg_studio", nvg_studio)):
    where = Path(module.__file__).resolve().parent
    assert repo not in where.parents, f"{name} was imported from the clone ({where}), not the installed wheel"
    print(f"{name}: {where}")
assert repo not in BUNDLED_MODEL.parents and (BUNDLED_MODEL / "model_index.json").is_file(), BUNDLED_MODEL
print(f"bundled model: {BUNDLED_MODEL}")

diffusers.utils.logging.disable_progress_bar()
start = time.perf_counter()
pipe = NVGPipeline.from_pretrained()
pipe.set_progress_bar_config(disable=True)
image = pipe(["fruit"], seeds=[0]).images[0]
print(f"library: one {image.size[0]}x{image.size[1]} fruit on {pipe.device} in {time.perf_counter() - start:.1f} s")


def run(*argv: str) -> str:
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=300).stdout.strip()
    print(f"$ {' '.join(argv)}\n{out.splitlines()[0] if out else ''}")
    return out


run("nvg", "--version")
run("nvg", "generate", "--class", "fruit", "--out", "f.png")
assert Path("f.png").stat().st_size > 1000
run("nvg-studio", "--help")

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = subprocess.Popen(["nvg-studio", "--port", str(port)], env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
try:
    for _ in range(240):
        try:
            config = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5))
            break
        except OSError:
            assert server.poll() is None, f"nvg-studio exited: {server.stderr.read()[-2000:]}"
            time.sleep(0.5)
    else:
        raise AssertionError("nvg-studio did not answer in 120 s")
    text = json.dumps(config)
    for expected in ("emoji32: the bundled NVG model", "Creative Commons", "reference_heart.png", "sketch_disc.png"):
        assert expected in text, f"the page lacks {expected!r}"
    print(f"nvg-studio: served the page on port {port} with the model card, data credits and examples")
finally:
    server.send_signal(signal.SIGTERM)
    server.wait(60)
