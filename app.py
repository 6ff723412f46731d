"""NVG Studio web app: `python app.py [--host H] [--port P] [--share] [--model DIR_OR_ID]`.

Also the entry point of a Hugging Face Space (app_file: app.py).
"""

import argparse
from pathlib import Path

from nvg_core.pipeline import NVGPipeline

ROOT = Path(__file__).resolve().parent


def about_text(pipe: NVGPipeline, model: str | None) -> str:
    """The About tab: what NVG is, the loaded model's card, and the data credits."""
    card = Path(model or ROOT / "weights" / "emoji32") / "MODEL_CARD.md"
    credits = ROOT / "DATA_LICENSES.md"
    return "\n\n".join([
        "## What is NVG?\nNext Visual Granularity generation (Wang et al., arXiv 2508.12811, ICLR 2026) makes an "
        "image as a sequence of structure maps on one 16x16 latent grid: stage i splits the grid into 2^i equal "
        "clusters with one content token each. Structure is explicit, so you can draw it, copy it from a "
        "reference, lock early stages and regenerate later ones, or swap the class halfway.",
        f"## Model: {pipe.name}\n" + (card.read_text() if card.is_file() else "(no model card in the model folder)"),
        "## Data credits\n" + (credits.read_text() if credits.is_file() else ""),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the NVG Studio web app.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    parser.add_argument("--model", default=None, help="a model folder or hub id (default: the bundled model)")
    args = parser.parse_args()

    from app.ui import build_demo

    pipe = NVGPipeline.from_pretrained(args.model)
    demo = build_demo(pipe, about=about_text(pipe, args.model))
    # One generation at a time per device: CPU sampling uses every core already.
    demo.queue(max_size=32, default_concurrency_limit=1)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
