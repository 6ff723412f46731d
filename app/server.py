"""Serve the NVG Studio web app: `nvg-studio [--host H] [--port P] [--share] [--model DIR_OR_ID]`.

`python app.py` (a clone, a Hugging Face Space) runs the same main().
"""

import argparse
import atexit
import importlib.metadata
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

DIST = "nvg-studio"  # the distribution whose license files hold the data credits in an installed wheel


def _without_front_matter(card: str) -> str:
    """A model card without its YAML metadata block (for the hub, not for people)."""
    if card.startswith("---\n") and "\n---\n" in card[4:]:
        return card[4:].split("\n---\n", 1)[1].lstrip()
    return card


def about_text(model: str | None) -> str:
    """The About tab: what NVG is, the default model's card, and the data credits."""
    from nvg_core.pipeline import BUNDLED_MODEL  # here, so that --help imports no torch

    card = (Path(model) if model and Path(model).is_dir() else BUNDLED_MODEL) / "MODEL_CARD.md"
    return "\n\n".join([
        "## What is NVG?\nNext Visual Granularity generation (Wang et al., arXiv 2508.12811, ICLR 2026) makes an "
        "image as a sequence of structure maps on one 16x16 latent grid: stage i splits the grid into 2^i equal "
        "clusters with one content token each. Structure is explicit, so you can draw it, copy it from a "
        "reference, lock early stages and regenerate later ones, or swap the class halfway.",
        "## Default model\n" + (_without_front_matter(card.read_text()) if card.is_file()
                                 else "(no model card in the model folder)"),
        "## Data credits\n" + data_credits(),
    ])


def data_credits() -> str:
    """DATA_LICENSES.md: at the top of a clone or Space, among the license files of an installed wheel."""
    from nvg_core.pipeline import bundled

    local = bundled("DATA_LICENSES.md")
    if local.is_file():
        return local.read_text()
    try:
        return importlib.metadata.distribution(DIST).read_text("licenses/DATA_LICENSES.md") or ""
    except importlib.metadata.PackageNotFoundError:
        return ""


def gpu_decorator():
    """spaces.GPU on Hugging Face ZeroGPU Spaces (a no-op elsewhere); nothing where the package is absent."""
    try:
        import spaces
    except ImportError:
        return lambda fn: fn
    return spaces.GPU(duration=120)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; host and port default to Gradio's environment variables, which Spaces sets."""
    parser = argparse.ArgumentParser(prog="nvg-studio", description="Serve the NVG Studio web app.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (default $GRADIO_SERVER_NAME, else 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="port (default $GRADIO_SERVER_PORT, else 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    parser.add_argument("--model", default=os.environ.get("NVG_MODEL"),
                        help="the default model: a folder or hub id (default: $NVG_MODEL, else the bundled model)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="generations run at once (default: 1 on a CPU, where one already uses every core; 2 on a GPU)")
    return parser.parse_args(argv)


def private_temp_dir() -> Path:
    """One temp folder for everything this process writes (Gradio's cache and uploads, results, GIFs),
    removed at exit, Ctrl-C and SIGTERM included; under $GRADIO_TEMP_DIR when that is set (Spaces)."""
    base = os.environ.get("GRADIO_TEMP_DIR")
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="nvg_studio_", dir=base))
    tempfile.tempdir = str(root)
    os.environ["GRADIO_TEMP_DIR"] = str(root / "gradio")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # SystemExit runs the atexit handlers
    return root


def main(argv: list[str] | None = None) -> None:
    """Parse the flags, then build the page and serve it until stopped."""
    args = parse_args(argv)
    private_temp_dir()
    import torch

    from .limits import MAX_SESSIONS
    from .models import ModelStore, default_sources
    from .ui import CSS, MAX_FILE_SIZE, build_demo

    store = ModelStore(default_sources(args.model))
    store.start(store.default)  # loads while the server starts; early requests are told to wait
    demo = build_demo(store, about=about_text(args.model), decorate=gpu_decorator())
    concurrency = args.concurrency or (2 if torch.cuda.is_available() else 1)
    demo.queue(max_size=64, default_concurrency_limit=concurrency)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_FILE_SIZE, css=CSS,
                state_session_capacity=MAX_SESSIONS)
