"""NVG Studio web app entry point (local runs and Hugging Face Spaces).

The full app (generate, stage stepping, sketch, reference, lock and regenerate) is being built; until it
lands this serves a page that says what is coming.
"""

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the NVG Studio web app.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    args = parser.parse_args()

    import gradio as gr

    with gr.Blocks(title="NVG Studio") as demo:
        gr.Markdown(
            "# NVG Studio\n"
            "Structure-controllable image generation with Next Visual Granularity.\n\n"
            "Coming next: class-conditional generation with every granularity stage, sketch-to-image, "
            "reference structure transfer, lock-and-regenerate and class swapping."
        )
    demo.launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
