"""NVG Studio web app: `python app.py [--host H] [--port P] [--share] [--model DIR_OR_ID]`.

Also the entry point of a Hugging Face Space (app_file: app.py).
"""

import argparse

from nvg_core.pipeline import NVGPipeline


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the NVG Studio web app.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    parser.add_argument("--model", default=None, help="a model folder or hub id (default: the bundled model)")
    args = parser.parse_args()

    from app.ui import build_demo

    pipe = NVGPipeline.from_pretrained(args.model)
    demo = build_demo(pipe)
    # One generation at a time per device: CPU sampling uses every core already.
    demo.queue(max_size=32, default_concurrency_limit=1)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
