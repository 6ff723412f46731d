"""The Gradio UI: build_demo(pipeline) lays out the page and wires components to app.handlers.

First slice of the app: Generate (streamed stage strip), step through stages, lock and regenerate
(variations and class swap). Sketch and reference tabs come next.
"""

from __future__ import annotations

import functools
import inspect

import gradio as gr

from nvg_core.pipeline import NVGPipeline

from . import handlers


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


def build_demo(pipe: NVGPipeline) -> gr.Blocks:
    """The NVG Studio page for one loaded pipeline (models are loaded once, by the caller)."""
    S = pipe.num_stages
    with gr.Blocks(title="NVG Studio") as demo:
        gr.Markdown("# NVG Studio\nNext Visual Granularity: images made coarse to fine, one structure stage at a time.")
        state = gr.State({})
        with gr.Row():
            with gr.Column(scale=1):
                class_name = gr.Dropdown(pipe.class_names, value=pipe.class_names[0], label="Class", filterable=True)
                seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)")
                num_images = gr.Slider(1, 8, value=1, step=1, label="Images")
                with gr.Accordion("Advanced", open=False):
                    content_guidance = gr.Slider(1.0, 6.0, value=3.5, step=0.25, label="Content guidance at the last stage")
                    structure_guidance = gr.Slider(1.0, 5.0, value=2.5, step=0.25, label="Structure guidance at the last stage")
                    flow_steps = gr.Slider(1, 25, value=pipe.default_flow_steps, step=1, label="Structure flow steps")
                generate_btn = gr.Button("Generate", variant="primary")
                status = gr.Markdown()
            with gr.Column(scale=2):
                images = gr.Gallery(label="Images", columns=4, height=320, buttons=["download"])
                strip = gr.Gallery(label="Stages (structure map, canvas)", columns=2 * S, height=200)
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
                regen_btn = gr.Button("Regenerate after the chosen stage")

        advanced = [content_guidance, structure_guidance, flow_steps]
        generate_btn.click(_user_errors(functools.partial(handlers.generate, pipe)),
                           [class_name, seed, num_images, *advanced], [strip, images, state, status],
                           api_name="generate")
        show_inputs, show_outputs = [state, stage, index], [stage_map, stage_bounds, stage_canvas]
        for trigger in (stage.change, state.change):
            trigger(_user_errors(functools.partial(handlers.show_stage, pipe)), show_inputs, show_outputs,
                    api_visibility="undocumented")
        regen_btn.click(_user_errors(functools.partial(handlers.regenerate, pipe)),
                        [state, stage, keep_content, num_variations, swap_class, seed, *advanced, index],
                        [images, state, status], api_name="regenerate")
    return demo
