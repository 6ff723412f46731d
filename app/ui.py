"""The Gradio UI: build_demo(pipeline) lays out the page and wires components to app.handlers.

Tabs for the three ways to start (Generate with a streamed stage strip, Sketch, Reference) and one shared
result area below them: the images, a stage viewer, and lock-and-regenerate (variations, class swap).
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path

import gradio as gr
import numpy as np

from nvg_core.pipeline import NVGPipeline

from . import handlers

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"


def _user_errors(fn):
    """Show UserError messages in the page (gr.Error) instead of a generic error; keeps streaming handlers streaming."""
    if inspect.isgeneratorfunction(fn):
        def stream(*args):
            try:
                yield from fn(*args)
            except handlers.UserError as error:
                raise gr.Error(str(error)) from error
        return stream

    def call(*args):
        try:
            return fn(*args)
        except handlers.UserError as error:
            raise gr.Error(str(error)) from error
    return call


def _white_canvas(size: int = 256) -> dict:
    white = np.full((size, size, 3), 255, dtype=np.uint8)
    return {"background": white, "layers": [], "composite": white}


def build_demo(pipe: NVGPipeline, about: str = "") -> gr.Blocks:
    """The NVG Studio page for one loaded pipeline (models are loaded once, by the caller)."""
    S = pipe.num_stages
    with gr.Blocks(title="NVG Studio") as demo:
        gr.Markdown("# NVG Studio\nNext Visual Granularity: images made coarse to fine, one structure stage at a time.")
        state = gr.State({})
        with gr.Row():
            class_name = gr.Dropdown(pipe.class_names, value=pipe.class_names[0], label="Class", filterable=True)
            seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)")
            num_images = gr.Slider(1, 8, value=1, step=1, label="Images")
        with gr.Accordion("Advanced", open=False):
            with gr.Row():
                content_guidance = gr.Slider(1.0, 6.0, value=3.5, step=0.25, label="Content guidance at the last stage")
                structure_guidance = gr.Slider(1.0, 5.0, value=2.5, step=0.25, label="Structure guidance at the last stage")
                flow_steps = gr.Slider(1, 25, value=pipe.default_flow_steps, step=1, label="Structure flow steps")
        advanced = [content_guidance, structure_guidance, flow_steps]
        with gr.Tabs():
            with gr.Tab("Generate"):
                generate_btn = gr.Button("Generate", variant="primary")
                strip = gr.Gallery(label="Stages (structure map, canvas)", columns=2 * S, height=200)
            with gr.Tab("Sketch"):
                gr.Markdown("Paint regions with the palette colours (white is a region too); the drawing becomes "
                            "the structure of the chosen stage.")
                with gr.Row():
                    sketch = gr.ImageEditor(value=_white_canvas(), type="numpy", image_mode="RGB", canvas_size=(256, 256),
                                            brush=gr.Brush(colors=handlers.SKETCH_PALETTE[1:], color_mode="fixed"),
                                            eraser=gr.Eraser(), sources=(), label="Layout")
                    projected = gr.Image(label="Projected balanced structure", type="pil")
                sketch_stage = gr.Slider(1, 4, value=2, step=1, label="The drawing applies to stage")
                gr.Examples([[str(p)] for p in sorted(EXAMPLES.glob("sketch_*.png"))], [sketch], label="Example layouts")
                with gr.Row():
                    preview_btn = gr.Button("Show projected structure")
                    sketch_btn = gr.Button("Generate from sketch", variant="primary")
            with gr.Tab("Reference"):
                with gr.Row():
                    reference = gr.Image(type="filepath", label="Reference image")
                    reference_maps = gr.Gallery(label="Its structure at every stage", columns=S, height=200)
                with gr.Row():
                    reference_stage = gr.Slider(0, S - 1, value=3, step=1, label="Reuse the structure up to stage")
                    reference_content = gr.Slider(-1, S - 1, value=-1, step=1, label="Keep its content up to stage (-1: none)")
                reference_btn = gr.Button("Generate from reference", variant="primary")
                gr.Examples([[str(p)] for p in sorted(EXAMPLES.glob("reference_*.png"))], [reference],
                            label="Example references (held-out Noto emoji, Apache-2.0)")
            with gr.Tab("About"):
                gr.Markdown(about or "NVG Studio: structure-controllable generation with Next Visual Granularity.")
        status = gr.Markdown()
        images = gr.Gallery(label="Images", columns=4, height=320, object_fit="contain", buttons=["download"])
        with gr.Row():
            stage = gr.Slider(0, S - 1, value=1, step=1, label="Stage")
            index = gr.Number(value=0, precision=0, label="Image number")
        with gr.Row():
            stage_map = gr.Image(label="Structure map", type="pil")
            stage_bounds = gr.Image(label="Clusters over the image", type="pil")
            stage_canvas = gr.Image(label="Canvas after this stage", type="pil")
        with gr.Accordion("Lock and regenerate", open=True):
            with gr.Row():
                keep_content = gr.Checkbox(value=True, label="Keep content too (not only structure)")
                num_variations = gr.Slider(1, 8, value=4, step=1, label="Variations")
                swap_class = gr.Dropdown([""] + pipe.class_names, value="", label="Swap to class (empty: same)")
                regen_btn = gr.Button("Keep stages up to the chosen one, regenerate the rest")

        common = [class_name, seed, num_images, *advanced]
        generate_btn.click(_user_errors(functools.partial(handlers.generate, pipe)), common,
                           [strip, images, state, status], api_name="generate")
        preview_btn.click(_user_errors(functools.partial(handlers.sketch_preview, pipe)), [sketch, sketch_stage],
                          [projected, status], api_name="sketch_preview")
        sketch_btn.click(_user_errors(functools.partial(handlers.sketch_generate, pipe)),
                         [sketch, sketch_stage, *common], [projected, images, state, status], api_name="sketch_generate")
        reference.upload(_user_errors(functools.partial(handlers.extract_structure, pipe)), [reference],
                         [reference_maps, status], api_name="extract_structure")
        reference_btn.click(_user_errors(functools.partial(handlers.reference_generate, pipe)),
                            [reference, reference_stage, reference_content, *common], [images, state, status],
                            api_name="reference_generate")
        show_inputs, show_outputs = [state, stage, index], [stage_map, stage_bounds, stage_canvas]
        for trigger in (stage.change, index.change, state.change):
            trigger(_user_errors(functools.partial(handlers.show_stage, pipe)), show_inputs, show_outputs,
                    api_visibility="private")
        regen_btn.click(_user_errors(functools.partial(handlers.regenerate, pipe)),
                        [state, stage, keep_content, num_variations, swap_class, seed, *advanced, index],
                        [images, state, status], api_name="regenerate")
    return demo
