"""The Gradio UI: build_demo(models) lays out the page and wires components to app.handlers.

An editor's layout: the model picker on top (app.models); on the left the actions, one tab each (Generate,
Sketch, Reference, Lock, Edit, Open); on the right the current result (status, images with their seeds) and
the visitor's history (app/history.py) with undo and redo; below, the current image's stage strip (every
stage's structure map over its canvas), a stage viewer, the coarse-to-fine GIF and the downloads.
"""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np

from nvg_core.images import MAX_PIXELS
from nvg_core.locks import INPAINT_STAGE
from nvg_core.pipeline import NVGPipeline, bundled
from nvg_core.sampling import official_options
from nvg_core.sketch import PALETTE, PALETTE_NAMES

from . import browser_history, handlers, stepping
from .components import ImageFiles, RawImage, RawImageEditor, RawNumber, RawSlider
from .history import History
from .limits import release_memory
from .models import ModelLoading, ModelStore

EXAMPLES = bundled("assets", "examples")
OVERVIEW = EXAMPLES.parent / "overview.png"  # docs/make_figures.py
OVERVIEW_LABEL = ("Below, what NVG makes (the bundled model): every stage of an image, a structure transfer, a class "
                  "swap and an inpainting")
STAGES_TEXT = ("**Stages of the viewed image** (click one to view it). Each stage splits the image's latent grid into "
               "twice as many regions as the stage before, from 1 region to one per cell; its **structure map** (top) "
               "colours the regions, and each region gets one content token, decoded into the canvas (bottom).")
MAX_FILE_SIZE = "20MB"  # uploads over this are refused by the server; nvg_core refuses images over MAX_PIXELS
FILE_MAX_AGE_S = 1800  # results, uploads and GIFs are deleted this long after they were last handed out
# The bundled model's images are 64 px: shown larger, the browser would blur them; square pixels instead.
# The sketch editor's own "clear" button deselects the brush: the page's "Start over" button replaces it.
CSS = """
.crisp img, .crisp canvas { image-rendering: pixelated; }
#sketch button[title='Clear canvas'] { display: none; }
#stage-strip .caption-label, #history .caption-label { white-space: normal; font-size: 12px; }
#history .caption-label { max-width: calc(100% - 8px); overflow-wrap: anywhere; }
#title h2 { margin: 0; }
#title, #model-status { min-width: min(220px, 100%) !important; }
#history, #history .gallery-container, #history .grid-wrap {  /* every row of the history, no empty space */
  height: auto !important; min-height: 0 !important; max-height: none !important; }
@media (max-width: 640px) {  /* a phone: two images a row, every row shown, every tab in the tab bar */
  #images .grid-container { grid-template-columns: repeat(2, minmax(0, 1fr)) !important; }
  #images, #images .gallery-container, #images .grid-wrap { height: auto !important; max-height: none !important; }
  .tab-container button { padding-left: 4px !important; padding-right: 4px !important; font-size: 13px !important; }
}
.tab-container button { padding-left: 10px; padding-right: 10px; }  /* the bar and Gradio's measuring copy alike */
/* Step: every candidate and chosen stage shown whole (its split over its canvas, 1:2) with its caption below; a
   clicked candidate is not marked (the status names it), as the gallery would keep the mark on new candidates */
#step-candidates, #step-candidates .gallery-container, #step-candidates .grid-wrap,
#step-path, #step-path .gallery-container, #step-path .grid-wrap {
  height: auto !important; min-height: 0 !important; max-height: none !important; }
#step-candidates .grid-container, #step-path .grid-container { grid-auto-rows: auto !important; grid-template-rows: none !important; }
#step-path .grid-container { grid-template-columns: repeat(auto-fill, minmax(56px, 1fr)) !important; }  /* rows, no scroll */
#step-candidates .thumbnail-item, #step-path .thumbnail-item {
  aspect-ratio: auto !important; height: auto !important; display: flex; flex-direction: column; }
#step-candidates .thumbnail-item img, #step-path .thumbnail-item img { height: auto !important; aspect-ratio: 1 / 2; }
#step-candidates .thumbnail-item.selected { --ring-color: transparent; border-color: var(--border-color-primary); }
#step-candidates .caption-label, #step-path .caption-label {
  position: static !important; max-width: 100% !important; opacity: 1 !important; border: none !important;
  white-space: normal !important; font-size: 12px !important; }
"""
STEP_TEXT = ("Choose an image stage by stage. Each candidate is one more stage: its colours (bottom) and how its "
             "regions split next (top). Click one to keep it; **More** draws others, **Back** returns to the stage "
             "before, and the Class box applies from the next draw on. **Finish** draws the remaining stages "
             "(Images box); the images join the history.")
SWAP_HINT = ("Swapping class? Keep the structure only: kept content keeps the old class (bundled model, "
             "stages 0..1 kept: the new class is read in 28% of swaps without the content, 2% with it).")
TRANSFER_HINT = ("Bundled model, structure up to stage 2: classes drawn by their outline (hand, heart, arrow, flag, "
                 "sign) rarely survive another outline; meal, drink, shape and electronics do best. The fruit "
                 "example held as smiley, heart and drink, the heart example as fruit (model card).")
VIEWED_STAGE = 1  # the stage viewer's first stage, and so the cluster edits' (bench/bench_edit.py --page)
log = logging.getLogger("nvg_studio")



def _error(error: Exception) -> gr.Error:
    """What the page shows for a failed event: a short notice the person can dismiss. Our own messages are
    shown as they are and logged without a traceback; anything else is logged in full, never shown."""
    if isinstance(error, TimeoutError):  # nvg_core.limits.TimeBudgetExceeded: the run stopped at the server's budget
        log.info("stopped a request: %s", error)
        return gr.Error(f"{error} (this server's budget per request: NVG_MAX_SECONDS)", print_exception=False)
    if isinstance(error, ValueError):  # UserError and nvg_core's ValueErrors are written for people
        log.info("refused a request: %s", error)
        return gr.Error(str(error), print_exception=False)
    log.exception("unexpected error in an event")
    return gr.Error(f"the server failed on this request ({type(error).__name__}; details are in its log): "
                    "try again, or with other settings", print_exception=False)


def _bind(store: ModelStore, fn: Callable, decorate: Callable, files: ImageFiles) -> Callable:
    """fn(pipe, *inputs, **later) as an event function of (*inputs, model, *later): the session's model comes
    from the store, errors show in the page as gr.Error (see _error), returned images become files
    (ImageFiles), and handlers.KEEP leaves an output as it is. The event function carries fn's parameter
    names, so API users see them; fn's keyword-only parameters (added after `model` existed) come after
    `model`, so callers passing arguments by position are never silently reordered."""
    signature = list(inspect.signature(fn).parameters.values())[1:]
    inputs_ = [p for p in signature if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    later = [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in signature if p.kind is inspect.Parameter.KEYWORD_ONLY]
    params = [*inputs_, inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None), *later]

    def call(values: tuple) -> tuple:
        """(pipe, positional inputs, keyword inputs) of the event's values."""
        model = values[len(inputs_)]
        return store.get(model), values[:len(inputs_)], {p.name: v for p, v in zip(later, values[len(inputs_) + 1:])}

    if inspect.isgeneratorfunction(fn):
        def event(*values):
            try:
                pipe, args, kwargs = call(values)
                sent = {}
                for outputs in fn(pipe, *args, **kwargs):
                    yield files.replace(outputs, sent)
            except Exception as error:
                raise _error(error) from error
            finally:
                release_memory()
    else:
        def event(*values):
            try:
                pipe, args, kwargs = call(values)
                return files.replace(fn(pipe, *args, **kwargs))
            except Exception as error:
                raise _error(error) from error
            finally:
                release_memory()
    event.__signature__ = inspect.Signature(params)
    event.__name__ = fn.__name__
    return decorate(event)


# Run once the page is loaded. Ctrl+Enter (Cmd+Enter on a Mac) presses the primary button of the tab in view,
# as in other generation apps. The sketch palette's swatches get their colours' names (a tooltip, and what a
# screen reader says) after any click, as the editor draws them when its Color button is clicked.
PAGE_JS = """() => {
  document.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter' || !(event.ctrlKey || event.metaKey)) return;
    const button = [...document.querySelectorAll('.primary-action')].find(b => b.offsetParent !== null && !b.disabled);
    if (button) { event.preventDefault(); button.click(); }
  });
  const names = %s;
  const name = () => document.querySelectorAll('#sketch button.color:not([title])').forEach((swatch) => {
    const colour = names[swatch.style.backgroundColor];
    if (colour) { swatch.title = colour; swatch.setAttribute('aria-label', colour); }
  });
  document.addEventListener('click', () => setTimeout(name, 50), true);  // the swatches show after a click
}""" % json.dumps({f"rgb({int(c[1:3], 16)}, {int(c[3:5], 16)}, {int(c[5:7], 16)})": name
                   for c, name in zip(PALETTE, PALETTE_NAMES)})
# Start over clears the sketch in the browser, with the editor's own clear (white background kept) and the brush
# picked again. Setting the editor's value from the server instead left it loading for good once anything had
# been drawn (Gradio 6.31).
CLEAR_SKETCH_JS = """() => {
  const editor = document.querySelector('#sketch');
  editor.querySelector("button[title='Clear canvas']").click();
  setTimeout(() => editor.querySelector("button[title='Brush']")?.click(), 100);
}"""


def _white_canvas(size: int = 256) -> dict:
    white = np.full((size, size, 3), 255, dtype=np.uint8)
    return {"background": white, "layers": [], "composite": white}


def _busy(button: gr.Button, label: str, stop: gr.Button, action: Callable[[Callable], Any],
          swap: tuple[gr.Component, gr.Component] | None = None) -> Any:
    """A button that shows its action is running: disabled and relabelled at once (no queue), with `stop`
    live meanwhile, and swap's first component hidden for its second (the first view gives way to the
    results); then action(then) wires the action as the next step, and both buttons come back whether it
    succeeded or failed (Gradio runs a .then step only after a success, so the failure gets its own).
    Returns the action's event (for Stop's cancels)."""
    idle = button.value
    started = button.click(lambda: (gr.update(value=label, interactive=False), gr.update(interactive=True),
                                    *([gr.update(visible=False), gr.update(visible=True)] if swap else [])),
                           None, [button, stop, *(swap or [])], queue=False, api_visibility="private")
    done = action(started.then)
    for after in (done.then, done.failure):
        after(lambda: (gr.update(value=idle, interactive=True), gr.update(interactive=False)), None, [button, stop],
              queue=False, api_visibility="private")
    return done


def build_demo(models: ModelStore | NVGPipeline, about: str = "", decorate: Callable = lambda fn: fn) -> gr.Blocks:
    """The NVG Studio page over a store of models (or one loaded pipeline); models load once per process.

    decorate wraps every function that runs a model (app/server.py passes spaces.GPU on ZeroGPU Spaces).
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

    def classes(label: str) -> gr.Dropdown:
        return gr.Dropdown([""] + class_names, value="", label=label, filterable=True)

    with gr.Blocks(title="NVG Studio", delete_cache=(FILE_MAX_AGE_S // 4, FILE_MAX_AGE_S)) as demo:
        files = ImageFiles(Path(demo.GRADIO_CACHE) / "nvg_outputs")
        state = gr.State(History())  # the visitor's history; its current entry is what Lock and Edit work on
        kept_history = gr.BrowserState({}, storage_key=browser_history.STORAGE_KEY)
        with gr.Row(equal_height=True):
            gr.Markdown("## NVG Studio\nImages made coarse to fine, one structure stage at a time.", elem_id="title")
            model = gr.Dropdown(store.names, value=store.default, label="Model", scale=2, min_width=240)
            model_status = gr.Markdown(elem_id="model-status")
        with gr.Row():
            with gr.Column(scale=2, min_width=340):
                with gr.Row():
                    class_name = gr.Dropdown(class_names, value=class_names[0] if class_names else None, label="Class",
                                             filterable=True, min_width=120)
                    seed = RawNumber(value=-1, precision=0, label="Seed (-1: random)", min_width=100)
                    num_images = slider("num_images", 4, "Images")
                with gr.Tabs() as tabs:
                    with gr.Tab("Generate"):
                        generate_btn = gr.Button("Generate", variant="primary", elem_classes=["primary-action"])
                        gr.Markdown("The stage strip below fills stage by stage; every result joins the history.")
                    with gr.Tab("Step", id="step"):
                        gr.Markdown(STEP_TEXT, elem_id="step-text")
                        with gr.Row(equal_height=True):
                            num_candidates = slider("num_candidates", 4, "Candidates per stage")
                            step_start_btn = gr.Button("Start", variant="primary", elem_classes=["primary-action"])
                        candidates = gr.Gallery(label="Candidates for the next stage", show_label=False, columns=4,
                                                height="auto", allow_preview=False, object_fit="contain", fit_columns=False,
                                                elem_id="step-candidates", elem_classes=["crisp"])
                        with gr.Row():
                            step_more_btn = gr.Button("More", size="sm", elem_id="step-more")
                            step_back_btn = gr.Button("Back", size="sm", elem_id="step-back")
                            step_finish_btn = gr.Button("Finish", size="sm", variant="secondary", elem_id="step-finish")
                        gr.Markdown("**Chosen so far**, stage by stage:")
                        chosen = gr.Gallery(label="Chosen so far", show_label=False, columns=S, height="auto",
                                            allow_preview=False, object_fit="contain", fit_columns=False,
                                            elem_id="step-path", elem_classes=["crisp"])
                        with gr.Row(equal_height=True):
                            step_keep = RawSlider(0, S - 2, value=2, step=1, label="Keep stages 0 up to")
                            step_from_btn = gr.Button("Step from the viewed image", size="sm", elem_id="step-from")
                        step_state = gr.State(None)  # the visitor's Stepper (app/stepping.py)
                        step_pick = RawNumber(value=None, precision=0, visible=False)  # the clicked candidate, from 1
                    with gr.Tab("Sketch"):
                        sketch = RawImageEditor(value=_white_canvas(), type="filepath", canvas_size=(256, 256),
                                                brush=gr.Brush(colors=list(PALETTE[1:]), color_mode="fixed", default_size=6),
                                                eraser=gr.Eraser(default_size=12), sources=(), label="Layout",
                                                elem_id="sketch", transforms=())
                        with gr.Row():
                            sketch_stage = slider("sketch_stage", 2, "The drawing applies to stage")
                            sketch_mode = gr.Radio([("filled regions in palette colours", "palette"),
                                                    ("outlines: closed strokes of any colour", "outline")],
                                                   value="palette", label="The drawing is")
                        with gr.Row():
                            clear_btn = gr.Button("Start over", size="sm")
                            preview_btn = gr.Button("Show projected structure", size="sm")
                            sketch_btn = gr.Button("Generate from sketch", variant="primary", elem_classes=["primary-action"])
                        projected = gr.Image(label="Projected balanced structure (outlines: in the stage's colours)",
                                             type="pil", height=200, elem_classes=["crisp"])
                        gr.Examples([[str(p)] for p in sorted(EXAMPLES.glob("sketch_*.png"))], [sketch], label="Example layouts")
                    with gr.Tab("Reference", id="reference"):
                        reference = RawImage(type="filepath", elem_id="reference-image", height=220,
                                             label=f"Reference image (PNG, JPEG, WebP, GIF...; up to {MAX_FILE_SIZE} "
                                                   f"and {MAX_PIXELS // 1_000_000} megapixels)")
                        reference_maps = gr.Gallery(label="Its structure at every stage", columns=S, height=120,
                                                    allow_preview=False, elem_id="reference-maps", elem_classes=["crisp"])
                        with gr.Row():
                            reference_stage = RawSlider(0, S - 1, value=2, step=1, label="Reuse the structure up to stage")  # measured: model card
                            reference_content = RawSlider(-1, S - 1, value=-1, step=1, label="Keep its content up to stage (-1: none)")
                        reference_btn = gr.Button("Generate from reference", variant="primary", elem_classes=["primary-action"])
                        gr.Markdown(TRANSFER_HINT, elem_id="transfer-hint")
                        gr.Examples([[str(p)] for p in sorted(EXAMPLES.glob("reference_*.png"))], [reference],
                                    label="Example references (held-out Noto emoji, Apache-2.0)")
                    with gr.Tab("Lock"):
                        gr.Markdown("Keep the early stages of the viewed image and regenerate the rest: variations, "
                                    "or a class swap. Click a stage in the strip to choose up to where.")
                        with gr.Row():
                            keep_stage = RawSlider(0, S - 2, value=1, step=1, label="Keep stages 0 up to")
                            num_variations = slider("num_variations", 4, "Variations")
                        with gr.Row():
                            keep_content = gr.Checkbox(value=True, label="Keep content too (not only structure)",
                                                       elem_id="lock-content")
                            swap_class = classes("Swap to class (empty: same)")
                        gr.Markdown(SWAP_HINT, elem_id="swap-hint")
                        regen_btn = gr.Button("Keep these stages, regenerate the rest", variant="primary", elem_classes=["primary-action"])
                    with gr.Tab("Edit"):
                        edit_mask = RawImageEditor(type="filepath", canvas_size=(handlers.EDIT_SIZE, handlers.EDIT_SIZE),
                                                   brush=gr.Brush(colors=[("#ff00ff", 0.5)], color_mode="fixed", default_size=16),
                                                   eraser=gr.Eraser(), sources=(), elem_id="edit-mask", elem_classes=["crisp"],
                                                   label="Paint over what to change (the viewed image); the rest stays as it is",
                                                   transforms=())
                        with gr.Row():
                            edit_stage = RawSlider(0, S - 1, value=min(INPAINT_STAGE, S - 1), step=1,
                                                   label="Change from stage (0-2: new shapes and colours; 3-5: new details)")
                            # API only (the exact-cluster edit at 1); the page always frees what the mask touches
                            edit_cover = RawSlider(*handlers.LIMITS["cover"], value=0.0, step=0.05, label="Cover",
                                                   visible=False)
                        with gr.Row():
                            edit_class = classes("Class under the mask (empty: same)")
                            edit_variations = slider("num_variations", 4, "Variations")
                            edit_seed = RawNumber(value=-1, precision=0, label="Variation seed (-1: random)", min_width=100)
                        edit_btn = gr.Button("Regenerate under the mask", variant="primary", elem_classes=["primary-action"])
                        with gr.Row():
                            cluster = RawNumber(value=None, precision=0, elem_id="cluster",
                                                label="Cluster of the viewed stage (click one in the clusters image below; "
                                                      "it is highlighted there)")
                            donor = RawNumber(value=2, precision=0, label="Donor image number")
                        cluster_picked = gr.Markdown(elem_id="cluster-picked")
                        cluster_action = gr.Radio(list(handlers.CLUSTER_ACTIONS), value=next(iter(handlers.CLUSTER_ACTIONS)),
                                                  label="Cluster edit (the highlighted cluster, at the stage viewed below)")
                        cluster_btn = gr.Button("Edit the cluster")
                    with gr.Tab("Open"):
                        opened = RawImage(type="filepath", elem_id="open-image", height=220,
                                          label="Open an NVG image: a PNG saved by NVG Studio is made again, ready "
                                                "to lock or edit")
                with gr.Accordion("Advanced", open=False):
                    with gr.Row():
                        content_guidance = slider("content_guidance", content_default, "Content guidance at the last stage (earlier stages follow the model's schedule)", 0.25)
                        structure_guidance = slider("structure_guidance", structure_default, "Structure guidance at the last stage (earlier stages follow the model's schedule)", 0.25)
                    with gr.Row():
                        top_p = slider("top_p", top_p_default, "Top-p at the last stage (earlier stages follow the model's schedule)", 0.05)
                        flow_steps = slider("flow_steps", flow_steps_default, "Structure flow steps")
            with gr.Column(scale=3, min_width=340):
                with gr.Row(equal_height=True):
                    status = gr.Markdown(f"Pick a class and press Generate (Ctrl+Enter). {OVERVIEW_LABEL}:", elem_id="status")
                    stop_btn = gr.Button("Stop", size="sm", variant="stop", scale=0, min_width=70, elem_id="stop",
                                         interactive=False)
                # a fixed height keeps the history and stage strip in place; object_fit="contain" never crops
                # until the first result: what NVG makes, in the images' place
                first_view = gr.Image(str(OVERVIEW), label=OVERVIEW_LABEL, show_label=False, height=300, interactive=False,
                                      buttons=[], elem_id="first-view")
                images = gr.Gallery(label="Images (click one to view, lock or edit it)", columns=4, height=300,
                                    object_fit="contain", buttons=["download"], elem_classes=["crisp"], elem_id="images",
                                    allow_preview=False, visible=False)
                with gr.Row():
                    undo_btn = gr.Button("Undo", size="sm", interactive=False, min_width=60, scale=0)
                    redo_btn = gr.Button("Redo", size="sm", interactive=False, min_width=60, scale=0)
                    gr.Markdown("History (the current result is marked >): click one to make it current again. "
                                "This browser keeps it across reloads.")
                # every row shown (height "auto"), no label over the first row's thumbnails
                history = gr.Gallery(label="History", show_label=False, columns=6, height="auto", allow_preview=False,
                                     elem_id="history", elem_classes=["crisp"], object_fit="contain", fit_columns=False,
                                     visible=False)  # shown once it has an entry
        gr.Markdown(STAGES_TEXT, elem_id="stages-text")
        strip = gr.Gallery(label="Stages of the viewed image", show_label=False, columns=S, height=180, allow_preview=False, elem_id="stage-strip", elem_classes=["crisp"],
                           fit_columns=False, object_fit="contain")
        with gr.Row():
            stage = RawSlider(0, S - 1, value=VIEWED_STAGE, step=1, label="Stage")
            index = RawNumber(value=1, precision=0, label="Image number (or click an image)")
        with gr.Row():
            stage_map = gr.Image(label="Structure map", type="pil", elem_classes=["crisp"], height=200)
            stage_bounds = gr.Image(label="Clusters over the image (click one to pick it for Edit)", type="pil", elem_id="stage-bounds",
                                    elem_classes=["crisp"], height=200)
            stage_canvas = gr.Image(label="Canvas after this stage", type="pil", elem_classes=["crisp"], height=200)
            progression = gr.Image(label="Coarse to fine (GIF)", type="filepath", height=200, buttons=["download"],
                                   elem_id="progression")
        downloads = gr.File(label="Downloads: the viewed image (PNG with its recipe), 4x, and the GIF",
                            file_count="multiple", elem_id="downloads", height=120)

        advanced = [content_guidance, structure_guidance, flow_steps, top_p]
        with gr.Accordion("About NVG, the model and the data", open=False):
            gr.Markdown(about or "NVG Studio: structure-controllable generation with Next Visual Granularity.")
        poll = gr.Timer(1.0, active=False)  # runs while the session's model loads
        pending = gr.State(None)  # the model the poll waits for (not the picker's value, which a reply may reset)
        model_events = [model, class_name, swap_class, *advanced, stage, keep_stage, step_keep, reference_stage,
                        reference_content, edit_stage, edit_class, model_status, poll, pending]

        def unchanged(count: int) -> list:
            """Fresh no-op updates (Gradio pops keys from update dicts, so none is shared between replies)."""
            return [gr.update() for _ in range(count)]

        def model_outputs(name: str, current_class: str | None = None) -> tuple:
            """What the page shows for a model (one value per model_events entry): ready (the picker on it, its
            classes with the current one kept where the model has it, its sampling defaults on the Advanced
            sliders, stage ranges), still loading (the poll timer runs and waits for it), or failed (the
            default model's page, and a notice of the failure).
            Every reply sets the picker, the poll and what it waits for together, so two replies that cross (a
            picker can send its input twice) cannot leave the poll waiting on a model the picker no longer shows."""
            # One call decides: asking store.loading() afterwards could see a load that failed in between,
            # which would show "still loading" with the poll stopped.
            try:
                pipe = store.get(name)
            except ModelLoading as error:
                return (gr.update(value=name), *unchanged(len(model_events) - 4), str(error), gr.Timer(active=True), name)
            except handlers.UserError as error:
                gr.Warning(str(error), duration=8)
                if name == store.default:
                    return (*unchanged(len(model_events) - 3), "no model could be loaded", gr.Timer(active=False), None)
                return model_outputs(store.default, current_class)
            names = pipe.class_names
            kept = current_class if current_class in names else names[0]
            return (gr.update(value=name), gr.update(choices=names, value=kept), gr.update(choices=[""] + names, value=""),
                    *[gr.update(value=v) for v in handlers.advanced_values(pipe.default_options)],
                    *[gr.update(maximum=pipe.num_stages - m) for m in (1, 2, 2, 1, 1, 1)],  # the stage sliders
                    gr.update(choices=[""] + names, value=""),
                    f"{pipe.name}: {len(names)} classes, {pipe.num_stages} stages, on {pipe.device}", gr.Timer(active=False), None)

        def pick(name: str, current_class: str | None = None) -> tuple:
            store.start(name)  # retries a load that failed a while ago
            return model_outputs(name, current_class)

        def check(name: str | None, current_class: str | None = None) -> tuple:
            if name is None:  # nothing to wait for
                return (*unchanged(len(model_events) - 2), gr.Timer(active=False), None)
            return tuple(unchanged(len(model_events))) if store.loading(name) else model_outputs(name, current_class)

        demo.load(model_outputs, [model, class_name], model_events, api_visibility="private")
        poll.tick(check, [pending, class_name], model_events, api_visibility="private")
        model.input(pick, [model, class_name], model_events, api_visibility="private")

        # Actions: each adds a result to the history (state), which the views below follow.
        common = [class_name, seed, num_images, *advanced]
        result_outputs = [images, state, status]
        running = []  # the events Stop cancels
        results = (first_view, images)  # an action's click swaps the first view for the results
        # No progress overlay on Generate: the status line counts the stages and the strip fills stage by stage,
        # while the overlay's animation frames keep the browser busy for the whole generation (bench_app.py).
        running.append(_busy(generate_btn, "Generating...", stop_btn, lambda then: then(
            bind(handlers.generate), [state, *common, model], [strip, images, state, status], api_name="generate",
            show_progress="hidden"), swap=results))
        running.append(_busy(sketch_btn, "Generating...", stop_btn, lambda then: then(
            bind(handlers.sketch_generate), [state, sketch, sketch_stage, *common, model, sketch_mode],
            [projected, *result_outputs], api_name="sketch_generate"), swap=results))
        running.append(_busy(reference_btn, "Generating...", stop_btn, lambda then: then(
            bind(handlers.reference_generate), [state, reference, reference_stage, reference_content, *common, model],
            result_outputs, api_name="reference_generate"), swap=results))
        running.append(_busy(regen_btn, "Regenerating...", stop_btn, lambda then: then(
            bind(handlers.regenerate), [state, keep_stage, keep_content, num_variations, swap_class, seed, *advanced,
                                        index, model], result_outputs, api_name="regenerate"), swap=results))
        running.append(_busy(edit_btn, "Regenerating...", stop_btn, lambda then: then(
            bind(handlers.edit_region), [state, edit_mask, edit_stage, edit_class, edit_variations, edit_seed, *advanced,
                                         index, edit_cover, model], result_outputs, api_name="edit_region"), swap=results))
        running.append(_busy(cluster_btn, "Regenerating...", stop_btn, lambda then: then(
            bind(handlers.edit_cluster), [state, stage, cluster, cluster_action, edit_variations, edit_seed, *advanced,
                                          index, model, donor], result_outputs, api_name="edit_cluster"), swap=results))
        running.append(_busy(preview_btn, "Projecting...", stop_btn, lambda then: then(
            bind(handlers.sketch_preview), [sketch, sketch_stage, model, sketch_mode], [projected, status],
            api_name="sketch_preview")))
        # Step: candidates stage by stage (app/stepping.py)
        # (no progress overlay: its animation would take the CPU the candidates need; the buttons and the status
        # say what runs, as for Generate)
        step_outputs = [step_state, candidates, chosen, status]
        running.append(_busy(step_start_btn, "Drawing...", stop_btn, lambda then: then(
            bind(stepping.start), [class_name, seed, num_candidates, *advanced, model], step_outputs, api_name="step_start",
            show_progress="hidden")))
        running.append(_busy(step_more_btn, "Drawing...", stop_btn, lambda then: then(
            bind(stepping.more), [step_state, class_name, num_candidates, *advanced, model], step_outputs,
            api_name="step_more", show_progress="hidden")))
        running.append(_busy(step_from_btn, "Drawing...", stop_btn, lambda then: then(
            bind(stepping.step_from), [state, step_keep, index, class_name, seed, num_candidates, *advanced, model],
            step_outputs, api_name="step_from", show_progress="hidden")))
        running.append(_busy(step_finish_btn, "Finishing...", stop_btn, lambda then: then(
            bind(stepping.finish), [state, step_state, class_name, num_images, *advanced, model],
            [images, state, status, step_state], api_name="step_finish"), swap=results))
        step_back_btn.click(bind(stepping.back), [step_state, model], step_outputs, api_name="step_back")

        def pick_candidate(event: gr.SelectData) -> tuple:
            """The clicked candidate's number, Stop live while the next stage's candidates are drawn, and the status."""
            return event.index + 1, gr.update(interactive=True), f"Keeping candidate {event.index + 1}; drawing the next stage..."

        chose = candidates.select(pick_candidate, None, [step_pick, stop_btn, status], queue=False,
                                  api_visibility="private").then(
            bind(stepping.choose), [step_state, step_pick, class_name, num_candidates, *advanced, model], step_outputs,
            api_name="step_choose", show_progress="hidden")
        for after in (chose.then, chose.failure):
            after(lambda: gr.update(interactive=False), None, stop_btn, queue=False, api_visibility="private")
        running.append(chose)
        # Stop cancels whatever runs: a generation stops after its current stage and keeps the stages shown;
        # the history only ever gets finished results
        busy_buttons = [generate_btn, sketch_btn, reference_btn, regen_btn, edit_btn, cluster_btn, preview_btn,
                        step_start_btn, step_more_btn, step_from_btn, step_finish_btn]
        # (the status comes in a second step: a stage sent just before the cancel would otherwise overwrite it)
        stop_btn.click(lambda: [gr.update(value=b.value, interactive=True) for b in busy_buttons] + [gr.update(interactive=False)],
                       None, [*busy_buttons, stop_btn], cancels=running, queue=False, api_visibility="private").then(
            lambda: "Stopped: the stages made so far stay in view; the history is unchanged.", None, status, queue=False,
            api_visibility="private")
        demo.load(None, None, None, js=PAGE_JS, api_visibility="private")
        clear_btn.click(None, None, None, js=CLEAR_SKETCH_JS, api_visibility="private")
        # a class swap keeps the structure only by default: kept content keeps the old class (SWAP_HINT)
        swap_class.input(lambda name: gr.update(value=not name), swap_class, keep_content, api_visibility="private")
        # .change, not .upload: an example put in the box must refresh the maps too (and a cleared box empties them)
        reference.change(bind(handlers.extract_structure), [reference, model], [reference_maps, status],
                         api_name="extract_structure")
        # an image without a recipe goes to the Reference tab, and the page shows that tab
        opened.upload(bind(handlers.open_image), [state, opened, model], [images, state, status, reference],
                      api_name="open_image").success(
            lambda text: gr.Tabs(selected="reference") if text.startswith(handlers.NO_RECIPE) else gr.skip(),
            status, tabs, queue=False, api_visibility="private")

        # History: the strip of entries, restore by clicking one, undo and redo.
        def history_view(history_: History) -> tuple:
            """The history strip with the current entry selected, and undo / redo live where they can move."""
            thumbs = files.replace(handlers.history_strip(history_))
            return (gr.update(value=thumbs, selected_index=history_.position if thumbs else None, visible=bool(thumbs)),
                    gr.update(interactive=history_.position > 0),
                    gr.update(interactive=history_.position < len(history_.entries) - 1),
                    gr.update(visible=not thumbs), gr.update(visible=bool(thumbs)))

        def restore(history_: History, name: str, event: gr.SelectData) -> History:
            try:
                return handlers.restore(store.get(name), history_, event.index)
            except Exception as error:
                raise _error(error) from error
            finally:
                release_memory()

        def reload_history(history_: History, kept: Any, name: str) -> tuple:
            """(history, images, status) on a page load: the history the browser kept, its current entry made
            again; unchanged while the model is still loading or failed (the page then starts afresh)."""
            try:
                pipe = store.get(name)
                restored = handlers.load_history(pipe, history_, kept)
                if restored is handlers.KEEP:
                    return gr.skip(), gr.skip(), gr.skip()
                return (restored, *files.replace(handlers.current_images(pipe, restored)))
            except handlers.UserError as error:
                log.info("no history brought back: %s", error)
                return gr.skip(), gr.skip(), gr.skip()
            finally:
                release_memory()

        # no queue: the first result's images show at once, not after the views queued behind them
        state.change(history_view, state, [history, undo_btn, redo_btn, first_view, images], api_visibility="private",
                     show_progress="hidden", queue=False)
        # the history survives a reload: kept in the browser (app/browser_history.py), brought back on load
        state.change(browser_history.stored, [state, kept_history], kept_history, api_visibility="private",
                     show_progress="hidden", queue=False)
        demo.load(decorate(reload_history), [state, kept_history, model], [state, images, status], api_visibility="private")
        for moved in (history.select(decorate(restore), [state, model], state, api_visibility="private"),
                      undo_btn.click(bind(lambda pipe, h: handlers.step(pipe, h, -1)), [state, model], state,
                                     api_visibility="private"),
                      redo_btn.click(bind(lambda pipe, h: handlers.step(pipe, h, 1)), [state, model], state,
                                     api_visibility="private")):
            moved.success(bind(handlers.current_images), [state, model], [images, status], api_visibility="private")

        # Views of the current result's viewed image: they follow the history, the image number and the stage.
        def select_stage(event: gr.SelectData) -> tuple[int, int, int]:
            return event.index, min(event.index, S - 2), min(event.index, S - 2)

        strip.select(select_stage, None, [stage, keep_stage, step_keep], api_visibility="private")
        def select_image(event: gr.SelectData) -> int:
            return event.index + 1  # images are numbered from 1

        images.select(select_image, None, index, api_visibility="private")  # view that image
        # The downloads (and the GIF among them) first, as events are sent in the order they are bound: a
        # person saves the image they see
        gr.on([state.change, index.change], bind(handlers.viewed_files), [state, index, model], [downloads, progression],
              api_visibility="private", show_progress="hidden")
        gr.on([state.change, index.change], bind(handlers.stage_strip), [state, index, model], strip,
              api_visibility="private", show_progress="hidden")
        gr.on([state.change, index.change, stage.change, cluster.change], bind(handlers.show_stage),
              [state, stage, index, model, cluster],
              [stage_map, stage_bounds, stage_canvas], api_visibility="private", show_progress="hidden")
        gr.on([state.change, index.change, stage.change, cluster.change], bind(handlers.cluster_note),
              [state, stage, cluster, index, model], cluster_picked, api_visibility="private", show_progress="hidden")
        gr.on([state.change, index.change], bind(handlers.edit_background), [state, index, model], edit_mask,
              api_visibility="private", show_progress="hidden")

        def pick_cluster(history_: History, stage_: int, index_: int, name: str, event: gr.SelectData) -> int:
            try:
                return handlers.cluster_at(store.get(name), history_, stage_, index_, *event.index[:2], handlers.PREVIEW_SIZE)
            except Exception as error:
                raise _error(error) from error

        stage_bounds.select(pick_cluster, [state, stage, index, model], cluster, api_visibility="private")
    return demo
