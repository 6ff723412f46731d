"""Pure handler functions of the web app: plain inputs in, images / text / session state out.

Every action is one call into nvg_core; the UI (app/ui.py) only wires these to components, so tests can
call them directly. The session state is a History (app/history.py): every result is an entry, and the
actions work on the current one. Images are numbered from 1, as the page shows them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from nvg_core import recipe as recipes
from nvg_core import seeds as seeding
from nvg_core import sketch
from nvg_core.images import PERCEPTIBLE, changed_shares, feather_width, mask_at, read_image, read_mask, to_pil, to_uint8
from nvg_core.limits import LimitError, TimeBudgetExceeded
from nvg_core.locks import Locks
from nvg_core.pipeline import NVGPipeline
from nvg_core.sampling import NVGResult, SamplingOptions
from nvg_core.structure import render_map

from . import browser_history
from .history import Entry, History
from .limits import SERVER_LIMITS

PREVIEW_SIZE = 192
DOWNLOAD_SCALE = 4  # the 64-px model's images are also offered this many times larger (nearest neighbour)
log = logging.getLogger("nvg_studio")
NO_RECIPE = "that image carries no NVG recipe"  # the status of an opened image handed to the Reference tab
KEEP = object()  # an output the handler leaves as it is (the previous images stay until new ones arrive)
EDIT_SIZE = 256  # the edit canvas: the image enlarged with square pixels, big enough to paint on
# The range of every numeric input, read by the page's sliders too: API clients may send anything. Images
# and flow steps are the server's bounds (app/limits.py), which nvg_core checks again with every run.
LIMITS = {"num_images": (1, SERVER_LIMITS.max_images), "num_variations": (1, SERVER_LIMITS.max_images),
          "content_guidance": (1.0, 6.0), "structure_guidance": (1.0, 5.0), "top_p": (0.05, 1.0),
          "flow_steps": (1, SERVER_LIMITS.max_flow_steps), "sketch_stage": (1, 4), "cover": (0.0, 1.0),
          "num_candidates": (1, 8)}


class UserError(ValueError):
    """A problem with what the person asked for; the UI shows the message as it is."""


def number(value: Any, name: str, whole: bool = False, low: float | None = None, high: float | None = None) -> float | int:
    """A numeric input as the page or an API client sent it, checked for type, finiteness, wholeness and range
    (LIMITS[name] unless low and high are given)."""
    low, high = (low, high) if low is not None else LIMITS[name]
    label = name.replace("_", " ")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UserError(f"{label} must be a number, got {type(value).__name__}")
    try:
        parsed = int(value) if isinstance(value, int) or str(value).strip().lstrip("+-").isdigit() else float(value)
    except ValueError:
        raise UserError(f"{label} must be a number, got {str(value)[:40]!r}") from None
    if isinstance(parsed, float):
        if not math.isfinite(parsed):
            raise UserError(f"{label} must be a finite number, got {parsed}")
        if whole and parsed != int(parsed):
            raise UserError(f"{label} must be a whole number, got {parsed:g}")
    parsed = int(parsed) if whole else float(parsed)
    if not low <= parsed <= high:
        raise UserError(f"{label} must be between {low:g} and {high:g}, got {parsed:g}")
    return parsed


def seeds_for(seed: Any, count: Any, name: str = "num_images") -> list[int]:
    """`count` consecutive seeds from `seed` as the page or an API client sent them (nvg_core.seeds.seeds_for;
    -1 or empty: a random start)."""
    count = number(count, name, whole=True)
    blank = seed is None or (isinstance(seed, str) and not seed.strip())
    first = None if blank else number(seed, "seed", whole=True, low=-math.inf, high=math.inf)
    try:
        return seeding.seeds_for(first, count)
    except ValueError as error:
        raise UserError(str(error)) from error


def advanced_values(defaults: SamplingOptions) -> tuple[float, float, int, float]:
    """The Advanced sliders' values for a model's written-out defaults (pipe.default_options), in the
    handlers' order: content guidance, structure guidance, flow steps, top-p (each schedule at its last
    stage). At these values sampling_options gives the defaults back."""
    return defaults.content_guidance[-1], defaults.structure_guidance[-1], defaults.flow_steps, defaults.top_p[-1]


def sampling_options(pipe: NVGPipeline, content_guidance: float, structure_guidance: float, flow_steps: int,
                     top_p: float | None = None, *, imposed: bool = False) -> SamplingOptions:
    """The model's sampling defaults with the sliders' values: each schedule moved so that its last stage
    takes its slider's value (SamplingOptions.with_last_stage: at advanced_values the model's own schedules,
    early-stage boosts included), and the given flow steps. top_p None keeps the model's top-p schedule.

    Runs that impose stages (lock, edit, sketch, reference) start from the model's transfer_options, each
    schedule's last stage moved as far as its slider is moved from the free defaults (at advanced_values:
    transfer_options themselves)."""
    free = pipe.default_options
    base = pipe.transfer_options if imposed else free

    def last(name: str, value: float | None) -> float | None:
        """The last-stage value of `name` for the base schedule: the slider's, shifted to the base."""
        if value is None:
            return None
        ours, theirs = getattr(base, name)[-1], getattr(free, name)[-1]
        return value if ours == theirs else ours + value - theirs

    options = base.with_last_stage(
        pipe.num_stages, content_guidance=last("content_guidance", number(content_guidance, "content_guidance")),
        structure_guidance=last("structure_guidance", number(structure_guidance, "structure_guidance")),
        top_p=None if top_p is None else min(1.0, max(0.01, last("top_p", number(top_p, "top_p")))))
    return dataclasses.replace(options, flow_steps=number(flow_steps, "flow_steps", whole=True))


def class_of(pipe: NVGPipeline, class_name: str | None) -> int:
    if class_name is None or not str(class_name).strip():
        raise UserError("choose a class first")
    if not isinstance(class_name, (str, int)) or isinstance(class_name, bool):
        raise UserError(f"the class must be a class name, got {type(class_name).__name__}")
    try:
        return pipe.class_id(class_name)
    except ValueError as error:
        raise UserError(str(error)) from error


def _tile(image: Image.Image | np.ndarray) -> Image.Image:
    image = image if isinstance(image, Image.Image) else Image.fromarray(image)
    return image.resize((PREVIEW_SIZE, PREVIEW_SIZE), Image.NEAREST)


@dataclasses.dataclass(frozen=True)
class Download:
    """A file the page offers under a name people can read: an image (PNG, its recipe inside) or GIF bytes."""

    name: str
    data: Image.Image | bytes


def _file_stem(pipe: NVGPipeline, result: NVGResult, i: int, seeds: list[int]) -> str:
    """'smiley-seed42': the image's class and its seed. The class is that of the last stage, except for an
    inpainting (its recipe has a blend: the source's pixels outside the mask), which stays its source's
    class whatever class was drawn under the mask (the recipe says that one)."""
    recipe = result.recipes[i] if result.recipes else None
    if recipe is not None and recipe.blend is not None and recipe.source is not None:
        return f"{recipe.source.class_names[-1]}-seed{seeds[i]}"
    return f"{pipe.class_names[int(result.class_labels_BS[i, -1])]}-seed{seeds[i]}"


def result_images(pipe: NVGPipeline, result: NVGResult, seeds: list[int]) -> list[tuple[Download, str]]:
    """A result's images for the gallery: each a PNG carrying its recipe, named and captioned by class and seed."""
    images = recipes.attach(to_pil(result.images), result.recipes)
    return [(Download(f"{_file_stem(pipe, result, i, seeds)}.png", image), f"{i + 1}: seed {seeds[i]}")
            for i, image in enumerate(images)]


def record(history: History | None, pipe: NVGPipeline, result: NVGResult, seeds: list[int], label: str) -> History:
    """The history with a new current entry for `result`."""
    return (history or History()).add(Entry(result, list(seeds), pipe.name, label))


def _made(pipe: NVGPipeline, result: NVGResult, seeds: list[int]) -> str:
    """The status text's tail: which class and which seeds made the images."""
    name = pipe.class_names[int(result.class_labels_BS[0, -1])]
    return f"{name}, seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def stage_tile(labels_N: torch.Tensor, canvas: Image.Image, stage: int) -> Image.Image:
    """One stage of the strip: its structure map over its canvas, at the canvas's size (square pixels)."""
    size = canvas.width
    return Image.fromarray(np.concatenate([render_map(labels_N, stage, size), np.asarray(canvas.convert("RGB"))], 0))


def generate(pipe: NVGPipeline, history: History | None, class_name: str, seed: float | None, num_images: int,
             content_guidance: float, structure_guidance: float, flow_steps: int, top_p: float | None = None
             ) -> Iterator[tuple[list, Any, Any, str]]:
    """Stream a generation: after every stage, (stage strip, images, history, status text).

    The strip holds one tile per finished stage of the first image (its structure map over its decoded
    canvas); only that canvas is decoded per stage. Until the end the images and the history are KEEP (the
    previous result stays on the page); the last update brings the images and the new history entry.
    """
    class_id = class_of(pipe, class_name)
    seeds = seeds_for(seed, num_images)
    options = sampling_options(pipe, content_guidance, structure_guidance, flow_steps, top_p)
    strip, stages = [], []
    try:
        for stage in pipe.iter_stages([class_id] * len(seeds), seeds=seeds, options=options, preview=False,
                                      limits=SERVER_LIMITS):
            stages.append(stage)
            canvas = to_pil(pipe.decode(stage.canvas_BNC[:1]))[0]
            strip.append((stage_tile(stage.labels_BN[0], canvas, stage.stage), f"stage {stage.stage}"))
            yield list(strip), KEEP, KEEP, f"made stages 0..{stage.stage} of 0..{pipe.num_stages - 1} (seed {seeds[0]})"
    except TimeBudgetExceeded as error:  # the page's status says so too, beside the stages made
        yield list(strip), KEEP, KEEP, f"stopped: {error}"
        raise
    result = pipe.collect(stages, [class_id] * len(seeds), seeds=seeds, options=options)
    label = f"generate {pipe.class_names[class_id]}"
    yield strip, result_images(pipe, result, seeds), record(history, pipe, result, seeds, label), \
        f"done: {_made(pipe, result, seeds)}"


def image_index(result: NVGResult, number_: Any) -> int:
    """The 0-based index of image number `number_` (numbered from 1, as the page shows them)."""
    number_ = number(number_, "image number", whole=True, low=-math.inf, high=math.inf)
    if not 1 <= number_ <= len(result):
        raise UserError(f"image {number_} does not exist; this result has {len(result)} (numbered from 1)")
    return number_ - 1


def current_entry(pipe: NVGPipeline, history: History | None) -> Entry:
    if not isinstance(history, History) or history.current is None:
        raise UserError("generate an image first")
    entry = history.current
    if entry.model != pipe.name:
        raise UserError(f"the current images were made by the model {entry.model!r}, not {pipe.name!r}: "
                        "generate new ones with this model first")
    return entry


def _result(pipe: NVGPipeline, history: History | None) -> NVGResult:
    return current_entry(pipe, history).result


def _viewed(pipe: NVGPipeline, history: History | None, index: Any) -> tuple[Entry, int] | None:
    """(current entry, 0-based index of the viewed image) for the views, None when there is nothing to show.

    A number past the current result (a new result with fewer images) shows its first image."""
    if not isinstance(history, History) or history.current is None or history.current.model != pipe.name:
        return None
    entry = history.current
    try:
        return entry, image_index(entry.result, index)
    except UserError:
        return entry, 0


def _picked_cluster(pipe: NVGPipeline, stage: Any, cluster: Any) -> tuple[int, int | None]:
    """(stage, the picked cluster where it exists at that stage, else None), both checked."""
    stage = number(stage, "stage", whole=True, low=0, high=pipe.num_stages - 1)
    picked = None if cluster is None else number(cluster, "cluster", whole=True, low=-math.inf, high=math.inf)
    return stage, picked if picked is not None and 0 <= picked < 2**stage else None


def show_stage(pipe: NVGPipeline, history: History | None, stage: int, index: int = 1, *, cluster: int | None = None
               ) -> tuple[Image.Image, Image.Image, Image.Image]:
    """One stage of the viewed image: coloured structure map, boundaries over the final image (the cluster
    picked for Edit highlighted, when it exists at this stage), canvas.

    Nothing to show (blank outputs) until there is a result.
    """
    viewed = _viewed(pipe, history, index)
    if viewed is None:
        return None, None, None
    stage, picked = _picked_cluster(pipe, stage, cluster)
    return pipe.stage_view(viewed[0].result, viewed[1], stage, size=PREVIEW_SIZE, highlight=picked)


def stage_strip(pipe: NVGPipeline, history: History | None, index: int = 1) -> list:
    """Every stage of the viewed image as the strip shows it: its structure map over its canvas."""
    viewed = _viewed(pipe, history, index)
    if viewed is None:
        return []
    entry, i = viewed
    labels_SN = entry.result.select(i).labels_BSN[0]
    return [(stage_tile(labels_SN[s], canvas, s), f"stage {s}")
            for s, canvas in enumerate(pipe.stage_canvases(entry.result, i))]


def progression_gif(pipe: NVGPipeline, history: History | None, index: int = 1) -> Download | None:
    """A GIF of the viewed image made coarse to fine: per stage, its structure map beside its canvas.

    None until there is a result. The last frame (the finished image) is held longest.
    """
    viewed = _viewed(pipe, history, index)
    if viewed is None:
        return None
    entry, i = viewed
    return Download(f"{_file_stem(pipe, entry.result, i, entry.seeds)}-stages.gif",
                    pipe.progression_gif(entry.result, i, size=PREVIEW_SIZE))


def downloads(pipe: NVGPipeline, history: History | None, index: int = 1) -> list[Download]:
    """The viewed image's files: the PNG (its recipe inside), the same enlarged DOWNLOAD_SCALE times (nearest
    neighbour, recipe inside) when the model's images are small, and the coarse-to-fine GIF."""
    viewed = _viewed(pipe, history, index)
    if viewed is None:
        return []
    entry, i = viewed
    (png, _), stem = result_images(pipe, entry.result.select(i), entry.seeds[i:i + 1])[0], \
        _file_stem(pipe, entry.result, i, entry.seeds)
    files = [png]
    if png.data.width < 256:
        large = png.data.resize((png.data.width * DOWNLOAD_SCALE,) * 2, Image.NEAREST)
        large.info.update(png.data.info)
        files.append(Download(f"{stem}-{DOWNLOAD_SCALE}x.png", large))
    return [*files, progression_gif(pipe, history, index)]


def viewed_files(pipe: NVGPipeline, history: History | None, index: int = 1) -> tuple[list[Download], Download | None]:
    """(downloads, the coarse-to-fine GIF): the GIF is made once for the download list and the page's view."""
    files = downloads(pipe, history, index)
    return files, files[-1] if files else None


def history_strip(history: History | None) -> list:
    """The history as the page shows it: each entry's first image (a stored entry's thumbnail), captioned
    with its number and label."""
    if not isinstance(history, History):
        return []
    return [(to_pil(entry.result.images[:1])[0] if entry.result is not None else entry.thumbnail,
             f"{'> ' if n == history.position else ''}{n + 1}: {entry.label}") for n, entry in enumerate(history.entries)]


def current_images(pipe: NVGPipeline, history: History | None) -> tuple[list, str]:
    """(images, status) of the current history entry, for a restore, an undo, a redo or a reload (KEEP, KEEP
    when the history is empty)."""
    if not isinstance(history, History) or not history.entries:
        return KEEP, KEEP
    entry = current_entry(pipe, history)
    return (result_images(pipe, entry.result, entry.seeds),
            f"history entry {history.position + 1} of {len(history.entries)}: {entry.label}; {_made(pipe, entry.result, entry.seeds)}")


def restore(pipe: NVGPipeline, history: History | None, position: int) -> History:
    """History entry `position` (from 0, as the strip's selection gives it) made current again; an entry
    kept in the browser across a reload is made again from its recipes first (one run)."""
    if not isinstance(history, History) or not history.entries:
        raise UserError("there is no history yet")
    try:
        moved = history.go(int(position))
    except IndexError as error:
        raise UserError(str(error)) from None
    entry = moved.current
    if entry.result is not None:
        return moved
    if entry.model != pipe.name:
        raise UserError(f"history entry {moved.position + 1} was made by the model {entry.model!r}: pick it in the "
                        "Model box to open it")
    try:
        result = pipe.reproduce_run(entry.recipes, limits=SERVER_LIMITS)
    except ValueError as error:  # LimitError included
        raise UserError(f"history entry {moved.position + 1} cannot be made again here: {error}") from error
    return moved.made(moved.position, Entry(result, entry.seeds, entry.model, entry.label))


def step(pipe: NVGPipeline, history: History | None, delta: int) -> History:
    """Undo (delta -1) or redo (+1): the entry before or after the current one, made current (as restore)."""
    if not isinstance(history, History) or not history.entries:
        return history
    return restore(pipe, history, min(max(history.position + int(delta), 0), len(history.entries) - 1))


def load_history(pipe: NVGPipeline, history: History | None, kept: Any) -> Any:
    """On a page load: the history the browser kept for this model (browser_history), its current entry
    made again; KEEP when the session already has a history or the browser kept none."""
    if isinstance(history, History) and history.entries:
        return KEEP
    stored_ = browser_history.restored(kept, pipe.name)
    if not stored_.entries:
        return KEEP
    try:
        return restore(pipe, stored_, stored_.position)
    except UserError as error:  # the page starts afresh; the browser keeps its entries
        log.info("a stored history was not restored: %s", error)
        return KEEP


def regenerate(pipe: NVGPipeline, history: History | None, keep_stage: int, keep_content: bool, num_variations: int,
               class_name: str | None, seed: float | None, content_guidance: float, structure_guidance: float,
               flow_steps: int, top_p: float | None = None, index: int = 1) -> tuple[list, History, str]:
    """Keep stages 0..keep_stage of the current image and resample the rest (optionally as another class)."""
    entry = current_entry(pipe, history)
    keep_stage = number(keep_stage, "the kept stage", whole=True, low=0, high=pipe.num_stages - 2)
    if not isinstance(keep_content, bool):
        raise UserError(f"keep content must be true or false, got {str(keep_content)[:20]!r}")
    i = image_index(entry.result, index)
    target = class_of(pipe, class_name) if class_name else None
    seeds = _fresh_seeds(seed, num_variations, entry.seeds[i])
    variations = pipe.regenerate(entry.result, from_stage=keep_stage + 1, keep_content=keep_content,
                                 class_labels=target, num_variations=len(seeds), seeds=seeds, index=i,
                                 options=sampling_options(pipe, content_guidance, structure_guidance, flow_steps, top_p, imposed=True),
                                 limits=SERVER_LIMITS)
    source, kept = _file_stem(pipe, entry.result, i, entry.seeds), "structure and content" if keep_content else "structure"
    swap = f", as {pipe.class_names[target]}" if target is not None else ""
    label = f"lock 0..{keep_stage} ({'structure + content' if keep_content else 'structure'}{swap}) of {source}"
    drawn = pipe.class_names[int(variations.class_labels_BS[0, -1])]
    status = (f"kept the {kept} of stages 0..{keep_stage} of {source}; stages {keep_stage + 1}..{pipe.num_stages - 1} "
              f"drawn as {drawn}, seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}")
    if keep_content and target is not None:  # SWAP_HINT: kept content carries its own class
        status += f" (the kept content was drawn as {pipe.class_names[int(entry.result.class_labels_BS[i, 0])]}: " \
                  "the images may still look like it)"
    return result_images(pipe, variations, seeds), record(history, pipe, variations, seeds, label), status


def _fresh_seeds(seed: Any, count: Any, source_seed: int) -> list[int]:
    """Seeds for variations of an image: `count` consecutive ones from `seed` (-1: random), skipping the
    source image's own seed, which would remake the source wherever the run is free."""
    count = number(count, "num_variations", whole=True)
    first = seeds_for(seed, 1, "num_variations")[0]
    try:
        return [s for s in seeding.seeds_for(first, count + 1) if s != source_seed][:count]
    except ValueError as error:
        raise UserError(str(error)) from error


# --------------------------------------------------------------------------------------------------
# Sketch: a drawn layout becomes the structure of an early stage (nvg_core.sketch reads it)
# --------------------------------------------------------------------------------------------------


def _composite(drawing: dict | str | np.ndarray | None):
    composite = drawing.get("composite") if isinstance(drawing, dict) else drawing
    if composite is None:
        raise UserError("the sketch is empty: draw some regions first")
    return composite


def sketch_structure(pipe: NVGPipeline, drawing: dict | str | np.ndarray | None, stage: int, mode: str = "palette"):
    """Project a sketch (the editor's dict, a file or an array) onto the nearest balanced tree up to `stage`;
    mode "palette" reads regions filled with palette colours, "outline" closed strokes of any colour."""
    composite = _composite(drawing)
    stage = number(stage, "sketch_stage", whole=True)
    try:
        return sketch.project_sketch(composite, stage, grid=pipe.transformer.config.grid_size, mode=mode,
                                     max_stage=LIMITS["sketch_stage"][1])
    except ValueError as error:
        raise UserError(f"the sketch cannot be used: {error}") from error


def _projected(drawing, projection, mode: str) -> Image.Image:
    """The projected map: a palette drawing's regions in their own colours; an outline drawing's (mostly white
    inside its strokes) in the stage's colours, under the strokes."""
    labels_N, composite = projection.labels[-1], _composite(drawing)
    if mode != "outline":
        return Image.fromarray(sketch.render_in_drawing_colours(composite, labels_N, PREVIEW_SIZE))
    strokes_HW3 = np.asarray(Image.fromarray(sketch.read_sketch(composite)).resize((PREVIEW_SIZE, PREVIEW_SIZE), Image.NEAREST))
    preview_HW3 = render_map(labels_N, len(projection.labels) - 1, PREVIEW_SIZE).copy()
    drawn_HW = strokes_HW3.min(-1) < 200
    preview_HW3[drawn_HW] = strokes_HW3[drawn_HW] // 2  # darker, so a white or pale region never hides them
    return Image.fromarray(preview_HW3)


def sketch_preview(pipe: NVGPipeline, drawing, stage: int, *, mode: str = "palette") -> tuple[Image.Image, str]:
    """The projected structure of a sketch and how well it keeps the drawn boundaries."""
    projection = sketch_structure(pipe, drawing, stage, mode)
    return _projected(drawing, projection, mode), projection.summary()


def sketch_generate(pipe: NVGPipeline, history: History | None, drawing, stage: int, class_name: str,
                    seed: float | None, num_images: int, content_guidance: float, structure_guidance: float,
                    flow_steps: int, top_p: float | None = None, *, mode: str = "palette"):
    """Images of a class whose structure up to `stage` is the projected sketch."""
    projection = sketch_structure(pipe, drawing, stage, mode)
    class_id = class_of(pipe, class_name)
    seeds = seeds_for(seed, num_images)
    result = pipe.generate([class_id] * len(seeds), seeds=seeds, locks=Locks.from_structure(projection.labels),
                           options=sampling_options(pipe, content_guidance, structure_guidance, flow_steps, top_p, imposed=True),
                           action=f"sketch up to stage {len(projection.labels) - 1}", limits=SERVER_LIMITS)
    label = f"sketch {pipe.class_names[class_id]}"
    return (_projected(drawing, projection, mode), result_images(pipe, result, seeds), record(history, pipe, result, seeds, label),
            f"{projection.summary()}; {_made(pipe, result, seeds)}")


# --------------------------------------------------------------------------------------------------
# Reference: reuse the structure (and optionally the content) of an uploaded image
# --------------------------------------------------------------------------------------------------


def _reference(upload: str | bytes | None) -> tuple[Image.Image, str]:
    """Open an upload as nvg_core does; returns (PIL image, note about what was adapted)."""
    if upload is None or (isinstance(upload, str) and not upload):
        raise UserError("upload a reference image first")
    try:
        image, notes = read_image(upload)
    except ValueError as error:
        raise UserError(f"that file cannot be used: {error}") from error
    return image, "; ".join(notes)


def extract_structure(pipe: NVGPipeline, image_path: str | None) -> tuple[list, str]:
    """Every stage's structure map of an uploaded image, as a gallery (empty, with no message, once the
    reference is cleared)."""
    if image_path is None or (isinstance(image_path, str) and not image_path):
        return [], ""
    image, note = _reference(image_path)
    maps_SN = pipe.extract_structure(image)
    gallery = [(_tile(render_map(maps_SN[s], s)), f"stage {s}") for s in range(len(maps_SN))]
    return gallery, "structure extracted" + (f" ({note})" if note else "")


def reference_generate(pipe: NVGPipeline, history: History | None, image_path: str | None, structure_stage: int,
                       content_stage: int, class_name: str, seed: float | None, num_images: int,
                       content_guidance: float, structure_guidance: float, flow_steps: int, top_p: float | None = None
                       ) -> tuple[list, History, str]:
    """New images of a class that reuse the reference's structure up to `structure_stage` and, when
    `content_stage` >= 0, its content up to that stage (a class swap of the reference)."""
    image, note = _reference(image_path)
    k = number(structure_stage, "the structure stage", whole=True, low=0, high=pipe.num_stages - 1)
    j = number(content_stage, "the content stage", whole=True, low=-1, high=pipe.num_stages - 1)
    if j > k:
        raise UserError("content can only be kept up to the structure stage")
    class_id = class_of(pipe, class_name)
    seeds = seeds_for(seed, num_images)
    tokens = pipe.encode(image)
    kept = f"structure of stages 0..{k}" + (f", content of stages 0..{j}" if j >= 0 else "")
    result = pipe.generate([class_id] * len(seeds), seeds=seeds, locks=Locks.from_result(tokens, k, content_up_to=j),
                           options=sampling_options(pipe, content_guidance, structure_guidance, flow_steps, top_p, imposed=True),
                           action=f"reference: {kept}", limits=SERVER_LIMITS)
    status = f"kept the reference's {kept}; {_made(pipe, result, seeds)}" + (f" ({note})" if note else "")
    return (result_images(pipe, result, seeds), record(history, pipe, result, seeds, f"reference {pipe.class_names[class_id]}"),
            status)


# --------------------------------------------------------------------------------------------------
# Open an image saved by NVG Studio: its recipe makes it again, ready to lock or edit
# --------------------------------------------------------------------------------------------------


def open_image(pipe: NVGPipeline, history: History | None, file: str | bytes | None) -> tuple[Any, Any, str, Any]:
    """(images, history, status, reference): an NVG image (a PNG carrying its recipe) made again bit for bit
    and added to the history as the current result; any other image is handed to the Reference tab."""
    if file is None or (isinstance(file, str) and not file):
        raise UserError("choose an image saved by NVG Studio first")
    try:
        recipe = recipes.read_recipe(file)
    except ValueError as error:
        raise UserError(f"that image's recipe cannot be used: {error}") from error
    if recipe is None:
        _reference(file)  # a file that cannot be read at all is refused here
        return KEEP, KEEP, f"{NO_RECIPE}; it is now the reference on the Reference tab, to reuse its structure", file
    try:
        result = pipe.reproduce(recipe, limits=SERVER_LIMITS)
    except LimitError as error:
        raise UserError(f"this server cannot make that image again ({error}); `nvg generate --recipe IMAGE.png "
                        "--out again.png` makes it on your own machine") from error
    except ValueError as error:
        raise UserError(f"that image cannot be made again: {error}") from error
    seeds = [recipe.seed]
    return (result_images(pipe, result, seeds), record(history, pipe, result, seeds, f"opened {_file_stem(pipe, result, 0, seeds)}"),
            f"opened and made again: {recipe.parameters()}", KEEP)


# --------------------------------------------------------------------------------------------------
# Edit: resample what lies under a painted mask, or one cluster, keeping the rest of the image
# --------------------------------------------------------------------------------------------------


def edit_background(pipe: NVGPipeline, history: History | None, index: int = 1) -> Image.Image | None:
    """The viewed image, enlarged with square pixels, as the background to paint a mask on."""
    viewed = _viewed(pipe, history, index)
    if viewed is None:
        return None
    image = to_pil(viewed[0].result.select(viewed[1]).images)[0]
    return image.resize((EDIT_SIZE, EDIT_SIZE), Image.NEAREST)


def _painted(editor: dict | None) -> np.ndarray:
    """The union of the editor's painted layers (their painted pixels), refused when nothing is painted."""
    layers = (editor or {}).get("layers") if isinstance(editor, dict) or editor is None else None
    if not isinstance(layers, (list, type(None))):
        raise UserError("the mask must be the image editor's value (a dict with its painted layers)")
    try:
        masks = [read_mask(layer) for layer in layers or [] if layer is not None]
    except ValueError as error:
        raise UserError(f"the mask cannot be read: {error}") from error
    if not masks or not any(m.any() for m in masks):
        raise UserError("paint over the part of the image to regenerate first")
    return np.any([m if m.shape == masks[0].shape else np.asarray(Image.fromarray(m).resize(masks[0].shape[::-1]))
                   for m in masks], axis=0)


def _changed(source: NVGResult, edited: NVGResult, region_HW: np.ndarray, where: str, elsewhere: str) -> str:
    """For the status line: per variation, the share of the region's pixels that changed perceptibly and
    the share of the pixels beyond the blend's feather outside it that changed at all (changed_shares)."""
    before, after = to_uint8(source.images)[0], to_uint8(edited.images)
    shares = [changed_shares(before, image, region_HW) for image in after]
    return (f"{where} changed perceptibly (> {PERCEPTIBLE}/255): {', '.join(f'{a:.0%}' for a, _ in shares)}; "
            f"{elsewhere} (beyond a {feather_width(len(region_HW))} px feather) changed at all: "
            f"{', '.join(f'{b:.0%}' for _, b in shares)}")


def edit_region(pipe: NVGPipeline, history: History | None, mask: dict | None, from_stage: int, class_name: str | None,
                num_variations: int, seed: float | None, content_guidance: float, structure_guidance: float,
                flow_steps: int, top_p: float | None = None, index: int = 1, cover: float = 0.0
                ) -> tuple[list, History, str]:
    """Variations of the current image inpainted under the painted mask from `from_stage` on (optionally as
    another class there): every cluster the mask touches is resampled (cover 1: only those wholly under
    it), and outside the mask, beyond a 2 px feather, the pixels are the image's own."""
    entry = current_entry(pipe, history)
    i = image_index(entry.result, index)
    from_stage = number(from_stage, "the edit stage", whole=True, low=0, high=pipe.num_stages - 1)
    cover = number(cover, "cover")
    source = entry.result.select(i)
    painted = _painted(mask)
    try:
        locks = Locks.from_mask(source, painted, from_stage, cover=cover)
    except ValueError as error:
        raise UserError(f"the mask cannot be used: {error}") from error
    target = class_of(pipe, class_name) if class_name else None
    seeds = _fresh_seeds(seed, num_variations, entry.seeds[i])
    edited = pipe.regenerate(entry.result, from_stage=from_stage, class_labels=target, num_variations=len(seeds),
                             seeds=seeds, index=i, locks=locks, mask=painted, limits=SERVER_LIMITS,
                             options=sampling_options(pipe, content_guidance, structure_guidance, flow_steps, top_p, imposed=True))
    drawn = f" as {pipe.class_names[target]}" if target is not None else ""
    status = (f"inpainted under the mask from stage {from_stage}{drawn}; "
              f"{_changed(source, edited, mask_at(painted, pipe.tokenizer.spec.resolution), 'painted pixels', 'unpainted pixels')}; "
              f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}")
    label = f"edit (mask{drawn}) of {_file_stem(pipe, entry.result, i, entry.seeds)}"
    return result_images(pipe, edited, seeds), record(history, pipe, edited, seeds, label), status


def cluster_at(pipe: NVGPipeline, history: History | None, stage: int, index: int, x: float, y: float, size: int) -> int:
    """The stage-`stage` cluster under the point (x, y) of an image shown `size` pixels wide."""
    result = _result(pipe, history)
    grid = pipe.transformer.spec.grid_size
    cell = min(int(y * grid / size), grid - 1) * grid + min(int(x * grid / size), grid - 1)
    return int(result.select(image_index(result, index)).labels_BSN[0, int(stage), cell])


def cluster_note(pipe: NVGPipeline, history: History | None, stage: int, cluster: int | None, index: int = 1) -> str:
    """What a cluster edit would work on: the picked cluster of the viewed stage and its share of the image."""
    viewed = _viewed(pipe, history, index)
    if viewed is None:
        return "Generate an image first; then click a cluster in the clusters image below."
    stage, picked = _picked_cluster(pipe, stage, cluster)
    if picked is None:
        return f"No cluster picked: click one in the clusters image below (stage {stage} has clusters 0 to {2**stage - 1})."
    labels_N = viewed[0].result.labels_BSN[viewed[1], stage]
    return (f"Picked: cluster {picked} of stage {stage}, {float((labels_N == picked).float().mean()):.0%} of the image "
            f"(highlighted in the clusters image below).")


CLUSTER_ACTIONS = {"resample this cluster": "resample", "keep this cluster, resample the rest": "keep",
                   "copy this cluster's content from the donor image": "copy"}


def edit_cluster(pipe: NVGPipeline, history: History | None, stage: int, cluster: int, action: str,
                 num_variations: int, seed: float | None, content_guidance: float, structure_guidance: float,
                 flow_steps: int, top_p: float | None = None, index: int = 1, *, donor: int = 2
                 ) -> tuple[list, History, str]:
    """Resample one stage-`stage` cluster of the current image from that stage on, or everything but it, or
    give it the code that image number `donor` has there (Locks.from_donor) and resample its later stages."""
    entry = current_entry(pipe, history)
    i = image_index(entry.result, index)
    stage = number(stage, "stage", whole=True, low=0, high=pipe.num_stages - 1)
    if cluster is None:
        raise UserError("pick a cluster first: click one in the clusters image below")
    cluster = number(cluster, "cluster", whole=True, low=0, high=2**stage - 1)
    if action not in CLUSTER_ACTIONS:
        raise UserError(f"the action must be one of {', '.join(CLUSTER_ACTIONS)}, got {str(action)[:40]!r}")
    source, kind = entry.result.select(i), CLUSTER_ACTIONS[action]
    if kind == "copy":
        d = image_index(entry.result, donor)
        if d == i:
            raise UserError("the donor must be another image of this result (set the donor image number)")
        locks = Locks.from_donor(source, entry.result.select(d), stage, cluster)
    else:
        locks = Locks.from_clusters(source, stage, [cluster], invert=kind == "keep")
    changed_N = source.labels_BSN[0, stage].cpu() == cluster
    region_HW = pipe.cells_to_pixels(~changed_N if kind == "keep" else changed_N)
    seeds = _fresh_seeds(seed, num_variations, entry.seeds[i])
    done = f"{action} (stage {stage}, cluster {cluster}{f', donor image {donor}' if kind == 'copy' else ''})"
    edited = pipe.regenerate(entry.result, from_stage=stage, num_variations=len(seeds), seeds=seeds, index=i,
                             locks=locks, mask=region_HW, action=done, limits=SERVER_LIMITS,
                             options=sampling_options(pipe, content_guidance, structure_guidance, flow_steps, top_p, imposed=True))
    label = f"edit (cluster) of {_file_stem(pipe, entry.result, i, entry.seeds)}"
    where = ("other pixels", "cluster pixels") if kind == "keep" else ("cluster pixels", "other pixels")
    return (result_images(pipe, edited, seeds), record(history, pipe, edited, seeds, label),
            f"{done}; {_changed(source, edited, region_HW, *where)}; {_made(pipe, edited, seeds)}")
