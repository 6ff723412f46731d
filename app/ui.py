"""The Gradio UI: build_demo(models) lays out the page and wires components to app.handlers.

A model picker on top (app.models), tabs for the three ways to start (Generate with a streamed stage
strip, Sketch, Reference) and one shared result area below them: the images, the coarse-to-fine GIF, a
stage viewer, and lock-and-regenerate (variations, class swap).
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Callable

import gradio as gr
import numpy as np

from nvg_core.images import MAX_PIXELS
from nvg_core.pipeline import NVGPipeline
from nvg_core.sampling import official_options
from nvg_core.sketch import PALETTE

from . import handlers
from .components import ImageFiles, RawImage, RawImageEditor, RawNumber, RawSlider
from .models import ModelLoading, ModelStore

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
MAX_FILE_SIZE = "20MB"  # uploads over this are refused by the server; nvg_core refuses images over MAX_PIXELS
FILE_MAX_AGE_S = 1800  # results, uploads and GIFs are deleted this long after they were last handed out
# The bundled model's images are 64 px: shown larger, the browser would blur them; square pixels instead.
CSS = ".crisp img, .crisp canvas { image-rendering: pixelated; }"
log = logging.getLogger("nvg_studio")


def _error(error: Exception) -> gr.Error:
    """What the page shows for a failed event: our own messages as they are, never a path or a traceback."""
    if isinstance(error, ValueError):  # UserError and nvg_core's ValueErrors are written for people
        return gr.Error(str(error))
    log.exception("unexpected error in an event")
    return gr.Error(f"the server failed on this request ({type(error).__name__}; details are in its log): "
                    "try again, or with other settings")


def _bind(store: ModelStore, fn: Callable, decorate: Callable, files: ImageFiles) -> Callable:
    """fn(pipe, *inputs, **later) as an event function of (*inputs, model, *later): the session's model comes
    from the store, errors show in the page as gr.Error (see _error), returned images become files
    (ImageFiles), and a stream drives the progress bar stage by stage. The event function carries fn's
    parameter names, so API users see them; fn's keyword-only parameters (added after `model` existed) come
    after `model`, so callers passing arguments by position are never silently reordered."""
    signature = list(inspect.signature(fn).parameters.values())[1:]
    inputs_ = [p for p in signature if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    later = [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in signature if p.kind is inspect.Parameter.KEYWORD_ONLY]
    params = [*inputs_, inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None), *later]

    def call(values: tuple) -> tuple:
        """(pipe, positional inputs, keyword inputs) of the event's values."""
        model = values[len(inputs_)]
        return store.get(model), values[:len(inputs_)], {p.name: v for p, v in zip(later, values[len(inputs_) + 1:])}

    if inspect.isgeneratorfunction(fn):
        def event(*values, progress=gr.Progress()):
            try:
                pipe, args, kwargs = call(values)
                sent = {}
                for done, outputs in enumerate(fn(pipe, *args, **kwargs), start=1):
                    progress((min(done, pipe.num_stages), pipe.num_stages), desc="stages", unit="stage")
                    yield files.replace(outputs, sent)
            except Exception as error:
                raise _error(error) from error
        params.append(inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, default=gr.Progress()))
    else:
        def event(*values):
            try:
                pipe, args, kwargs = call(values)
                return files.replace(fn(pipe, *args, **kwargs))
            except Exception as error:
                raise _error(error) from error
    event.__signature__ = inspect.Signature(params)
    event.__name__ = fn.__name__
    return decorate(event)


def _stage_of_strip_item(event: gr.SelectData) -> int:
    """The strip alternates structure map and canvas per stage."""
    return event.index // 2


def _selected_item(event: gr.SelectData) -> int:
    return event.index


def _white_canvas(size: int = 256) -> dict:
    white = np.full((size, size, 3), 255, dtype=np.uint8)
    return {"background": white, "layers": [], "composite": white}


def build_demo(models: ModelStore | NVGPipeline, about: str = "", decorate: Callable = lambda fn: fn) -> gr.Blocks:
    """The NVG Studio page over a store of models (or one loaded pipeline); models load once per process.

    decorate wraps every function that runs a model (app.py passes spaces.GPU on ZeroGPU Spaces).
    Launch it with max_file_size=MAX_FILE_SIZE and css=CSS.
    """
    store = models if isinstance(models, ModelStore) else ModelStore.of(models)
    info = store.info(store.default)
    # A model whose classes are unknown until it loads: no classes yet, the 16x16 grid's 9 stages and the
    # authors' sampling settings; the page fills in its own once it is ready.
    class_names, S = (info.class_names, info.num_stages) if info else ([], 9)
    content_default, structure_default, flow_steps_default, top_p_default = handlers.advanced_values(
        info.defaults if info else official_options(S))

    def bind(fn: Callable) -> Callable:
        return _bind(store, fn, decorate, files)

    def slider(name: str, value: float, label: str, step: float = 1) -> RawSlider:
        return RawSlider(*handlers.LIMITS[name], value=value, step=step, label=label)

    with gr.Blocks(title="NVG Studio", delete_cache=(FILE_MAX_AGE_S // 4, FILE_MAX_AGE_S)) as demo:
        files = ImageFiles(Path(demo.GRADIO_CACHE) / "nvg_outputs")
        gr.Markdown("# NVG Studio\nNext Visual Granularity: images made coarse to fine, one structure stage at a time.")
        state = gr.State({})
        with gr.Row():
            model = gr.Dropdown(store.names, value=store.default, label="Model", scale=2)
            model_status = gr.Markdown(label="Model status")
        with gr.Row():
            class_name = gr.Dropdown(class_names, value=class_names[0] if class_names else None, label="Class",
                                     filterable=True)
            seed = RawNumber(value=-1, precision=0, label="Seed (-1: random)")
            num_images = slider("num_images", 1, "Images")
        with gr.Accordion("Advanced", open=False):
            with gr.Row():
                content_guidance = slider("content_guidance", content_default, "Content guidance at the last stage (earlier stages follow the model's schedule)", 0.25)
                structure_guidance = slider("structure_guidance", structure_default, "Structure guidance at the last stage (earlier stages follow the model's schedule)", 0.25)
                top_p = slider("top_p", top_p_default, "Top-p at the last stage (earlier stages follow the model's schedule)", 0.05)
                flow_steps = slider("flow_steps", flow_steps_default, "Structure flow steps")
        advanced = [content_guidance, structure_guidance, flow_steps, top_p]
        with gr.Tabs():
            with gr.Tab("Generate"):
                generate_btn = gr.Button("Generate", variant="primary")
                gr.Markdown("Each stage's structure map and canvas appear as they are made; click one to view it below.")
                strip = gr.Gallery(label="Stages", columns=2 * S, height=200, allow_preview=False, elem_id="stage-strip",
                                   elem_classes=["crisp"])
            with gr.Tab("Sketch"):
                gr.Markdown("Paint regions with the palette colours (white is a region too), or draw closed outlines "
                            "(choose which below); the drawing becomes "
                            "the structure of the chosen stage.")
                with gr.Row():
                    sketch = RawImageEditor(value=_white_canvas(), type="filepath", canvas_size=(256, 256),
                                            brush=gr.Brush(colors=list(PALETTE[1:]), color_mode="fixed"),
                                            eraser=gr.Eraser(), sources=(), label="Layout")
                    projected = gr.Image(label="Projected balanced structure", type="pil")
                with gr.Row():
                    sketch_stage = slider("sketch_stage", 2, "The drawing applies to stage")
                    sketch_mode = gr.Radio([("filled regions in palette colours", "palette"),
                                            ("outlines: closed strokes of any colour", "outline")],
                                           value="palette", label="The drawing is")
                gr.Examples([[str(p)] for p in sorted(EXAMPLES.glob("sketch_*.png"))], [sketch], label="Example layouts")
                with gr.Row():
                    preview_btn = gr.Button("Show projected structure")
                    sketch_btn = gr.Button("Generate from sketch", variant="primary")
            with gr.Tab("Reference"):
                with gr.Row():
                    reference = RawImage(type="filepath", elem_id="reference-image", label=f"Reference image (PNG, JPEG, WebP, GIF...; up to "
                                         f"{MAX_FILE_SIZE} and {MAX_PIXELS // 1_000_000} megapixels)")
                    reference_maps = gr.Gallery(label="Its structure at every stage", columns=S, height=200)
                with gr.Row():
                    reference_stage = RawSlider(0, S - 1, value=3, step=1, label="Reuse the structure up to stage")
                    reference_content = RawSlider(-1, S - 1, value=-1, step=1, label="Keep its content up to stage (-1: none)")
                reference_btn = gr.Button("Generate from reference", variant="primary")
                gr.Examples([[str(p)] for p in sorted(EXAMPLES.glob("reference_*.png"))], [reference],
                            label="Example references (held-out Noto emoji, Apache-2.0)")
            with gr.Tab("About"):
                gr.Markdown(about or "NVG Studio: structure-controllable generation with Next Visual Granularity.")
        status = gr.Markdown(label="Status", elem_id="status")
        with gr.Row():
            # height="auto": with a fixed height, a lone image fills the row and is cropped
            images = gr.Gallery(label="Images", columns=4, height="auto", object_fit="contain", buttons=["download"], scale=3,
                                elem_classes=["crisp"], elem_id="images")
            progression = gr.Image(label="Coarse to fine (GIF)", type="filepath", height=420, buttons=["download"], scale=2,
                                   elem_id="progression")
        with gr.Row():
            stage = RawSlider(0, S - 1, value=1, step=1, label="Stage")
            index = RawNumber(value=0, precision=0, label="Image number (or click an image)")
        with gr.Row():
            stage_map = gr.Image(label="Structure map", type="pil", elem_classes=["crisp"])
            stage_bounds = gr.Image(label="Clusters over the image (click one to pick it for Edit)", type="pil",
                                    elem_classes=["crisp"])
            stage_canvas = gr.Image(label="Canvas after this stage", type="pil", elem_classes=["crisp"])
        with gr.Accordion("Lock and regenerate", open=True):
            with gr.Row():
                keep_content = gr.Checkbox(value=True, label="Keep content too (not only structure)")
                num_variations = slider("num_variations", 4, "Variations")
                swap_class = gr.Dropdown([""] + class_names, value="", label="Swap to class (empty: same)", filterable=True)
                regen_btn = gr.Button("Keep stages up to the chosen one, regenerate the rest")
        with gr.Accordion("Edit a region or a cluster", open=False):
            with gr.Row():
                edit_mask = RawImageEditor(type="filepath", canvas_size=(handlers.EDIT_SIZE, handlers.EDIT_SIZE),
                                           brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed", default_size=24),
                                           eraser=gr.Eraser(), sources=(), elem_id="edit-mask", elem_classes=["crisp"],
                                           label="Paint over what to regenerate")
                with gr.Column():
                    edit_stage = RawSlider(0, S - 1, value=3, step=1, label="Resample from stage")
                    edit_cover = slider("cover", 1.0, "Free a cluster once this share of it is painted "
                                        "(1: nothing outside the mask changes; lower: bigger changes)", 0.05)
                    edit_class = gr.Dropdown([""] + class_names, value="", label="Class under the mask (empty: same)",
                                             filterable=True)
                    edit_btn = gr.Button("Regenerate under the mask", variant="primary")
            with gr.Row():
                cluster = RawNumber(value=0, precision=0, label="Cluster of the viewed stage (click the clusters image)")
                cluster_action = gr.Radio(list(handlers.CLUSTER_ACTIONS), value=next(iter(handlers.CLUSTER_ACTIONS)),
                                          label="Cluster edit")
                donor = RawNumber(value=1, precision=0, label="Donor image number (to copy from)")
                cluster_btn = gr.Button("Edit the cluster")

        poll = gr.Timer(1.0, active=False)  # runs while the session's model loads
        pending = gr.State(None)  # the model the poll waits for (not the picker's value, which a reply may reset)
        model_events = [model, class_name, swap_class, *advanced, stage, reference_stage, reference_content,
                        edit_stage, edit_class, model_status, poll, pending]

        def unchanged(count: int) -> list:
            """Fresh no-op updates (Gradio pops keys from update dicts, so none is shared between replies)."""
            return [gr.update() for _ in range(count)]

        def model_outputs(name: str) -> tuple:
            """What the page shows for a model (one value per model_events entry): ready (the picker on it, its
            classes, its sampling defaults on the Advanced sliders, stage ranges), still loading (the poll
            timer runs and waits for it), or failed (the default model's page, with the error). Every reply
            sets the picker, the poll and what it waits for together, so two replies that cross (a picker
            can send its input twice) cannot leave the poll waiting on a model the picker no longer shows."""
            # One call decides: asking store.loading() afterwards could see a load that failed in between,
            # which would show "still loading" with the poll stopped.
            try:
                pipe = store.get(name)
            except ModelLoading as error:
                return (gr.update(value=name), *unchanged(len(model_events) - 4), f"**{error}**", gr.Timer(active=True), name)
            except handlers.UserError as error:
                if name == store.default:
                    return (*unchanged(len(model_events) - 3), f"**{error}**", gr.Timer(active=False), None)
                picker, *fallback, _, timer, waiting = model_outputs(store.default)
                return (picker, *fallback, f"**{error}**", timer, waiting)
            names = pipe.class_names
            return (gr.update(value=name), gr.update(choices=names, value=names[0]), gr.update(choices=[""] + names, value=""),
                    *[gr.update(value=v) for v in handlers.advanced_values(pipe.default_options)],
                    *[gr.update(maximum=pipe.num_stages - 1)] * 4,  # the stage sliders
                    gr.update(choices=[""] + names, value=""),
                    f"{pipe.name}: {len(names)} classes, {pipe.num_stages} stages, on {pipe.device}", gr.Timer(active=False), None)

        def pick(name: str) -> tuple:
            store.start(name)  # retries a failed load
            return model_outputs(name)

        def check(name: str | None) -> tuple:
            if name is None:  # nothing to wait for
                return (*unchanged(len(model_events) - 2), gr.Timer(active=False), None)
            return tuple(unchanged(len(model_events))) if store.loading(name) else model_outputs(name)

        demo.load(model_outputs, [model], model_events, api_visibility="private")
        poll.tick(check, [pending], model_events, api_visibility="private")
        model.input(pick, [model], model_events, api_visibility="private")

        common = [class_name, seed, num_images, *advanced]
        # No progress overlay: the status line counts the stages and the strip fills stage by stage, while the
        # overlay's animation frames keep the browser busy for the whole generation (README, bench_app.py).
        generate_btn.click(bind(handlers.generate), [*common, model], [strip, images, state, status], api_name="generate",
                           show_progress="hidden")
        strip.select(_stage_of_strip_item, None, stage, api_visibility="private")
        images.select(_selected_item, None, index, api_visibility="private")  # view that image's stages
        preview_btn.click(bind(handlers.sketch_preview), [sketch, sketch_stage, model, sketch_mode], [projected, status],
                          api_name="sketch_preview")
        sketch_btn.click(bind(handlers.sketch_generate), [sketch, sketch_stage, *common, model, sketch_mode],
                         [projected, images, state, status], api_name="sketch_generate")
        reference.upload(bind(handlers.extract_structure), [reference, model], [reference_maps, status],
                         api_name="extract_structure")
        reference_btn.click(bind(handlers.reference_generate), [reference, reference_stage, reference_content, *common, model],
                            [images, state, status], api_name="reference_generate")
        for trigger in (stage.change, index.change, state.change):
            trigger(bind(handlers.show_stage), [state, stage, index, model], [stage_map, stage_bounds, stage_canvas],
                    api_visibility="private")
        for trigger in (index.change, state.change):
            trigger(bind(handlers.progression_gif), [state, index, model], progression, api_visibility="private")
        regen_btn.click(bind(handlers.regenerate),
                        [state, stage, keep_content, num_variations, swap_class, seed, *advanced, index, model],
                        [images, state, status], api_name="regenerate")
        for trigger in (index.change, state.change):
            trigger(bind(handlers.edit_background), [state, index, model], edit_mask, api_visibility="private")

        def pick_cluster(state_: dict, stage_: int, index_: int, name: str, event: gr.SelectData) -> int:
            try:
                return handlers.cluster_at(store.get(name), state_, stage_, index_, *event.index[:2], handlers.PREVIEW_SIZE)
            except Exception as error:
                raise _error(error) from error

        stage_bounds.select(pick_cluster, [state, stage, index, model], cluster, api_visibility="private")
        edit_btn.click(bind(handlers.edit_region),
                       [state, edit_mask, edit_stage, edit_class, num_variations, seed, *advanced, index, edit_cover, model],
                       [images, state, status], api_name="edit_region")
        cluster_btn.click(bind(handlers.edit_cluster),
                          [state, stage, cluster, cluster_action, num_variations, seed, *advanced, index, model, donor],
                          [images, state, status], api_name="edit_cluster")
    return demo
