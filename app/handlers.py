"""Pure handler functions of the web app: plain inputs in, images / text / session state out.

Every action is one call into nvg_core; the UI (app/ui.py) only wires these to components, so tests can
call them directly. The session state is a dict holding the last NVGResult and the seeds used.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from nvg_core import seeds as seeding
from nvg_core import sketch
from nvg_core.images import read_image, read_mask, to_pil
from nvg_core.locks import Locks
from nvg_core.pipeline import NVGPipeline
from nvg_core.sampling import NVGResult, SamplingOptions, result_from_stages
from nvg_core.structure import render_map

PREVIEW_SIZE = 192
EDIT_SIZE = 256  # the edit canvas: the image enlarged with square pixels, big enough to paint on
# The range of every numeric input, read by the page's sliders too: API clients may send anything.
LIMITS = {"num_images": (1, 8), "num_variations": (1, 8), "content_guidance": (1.0, 6.0),
          "structure_guidance": (1.0, 5.0), "top_p": (0.05, 1.0), "flow_steps": (1, 50), "sketch_stage": (1, 4), "cover": (0.25, 1.0)}


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
                     top_p: float | None = None) -> SamplingOptions:
    """The model's sampling defaults with the sliders' values: each schedule moved so that its last stage
    takes its slider's value (SamplingOptions.with_last_stage: at advanced_values the model's own schedules,
    early-stage boosts included), and the given flow steps. top_p None keeps the model's top-p schedule."""
    options = pipe.default_options.with_last_stage(
        pipe.num_stages, content_guidance=number(content_guidance, "content_guidance"),
        structure_guidance=number(structure_guidance, "structure_guidance"),
        top_p=None if top_p is None else number(top_p, "top_p"))
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


def _state(pipe: NVGPipeline, result: NVGResult, seeds: list[int]) -> dict:
    """A session's state: the last result, the seeds that made it, and the model it came from."""
    return {"result": result, "seeds": seeds, "model": pipe.name}


def _made(pipe: NVGPipeline, class_id: int, seeds: list[int]) -> str:
    """The status text's tail: which class and which seeds made the images."""
    return f"{pipe.class_names[class_id]}, seeds {seeds[0]}..{seeds[-1]}"


def generate(pipe: NVGPipeline, class_name: str, seed: float | None, num_images: int, content_guidance: float,
             structure_guidance: float, flow_steps: int, top_p: float | None = None
             ) -> Iterator[tuple[list, list[Image.Image], dict, str]]:
    """Stream a generation: after every stage, (stage strip, images, state, status text).

    The strip holds each finished stage's structure map (one pixel per latent cell) and decoded canvas of
    the first image, at their own sizes (the page scales them up with square pixels): only that canvas is
    decoded per stage, and the images come once, at the end (an empty list until then, which clears the
    last result's), so a stage costs the page little more than the model's own work.
    """
    class_id = class_of(pipe, class_name)
    seeds = seeds_for(seed, num_images)
    options = sampling_options(pipe, content_guidance, structure_guidance, flow_steps, top_p)
    strip, stages, grid = [], [], pipe.transformer.spec.grid_size
    for stage in pipe.iter_stages([class_id] * len(seeds), seeds=seeds, options=options, preview=False):
        stages.append(stage)
        strip += [(Image.fromarray(render_map(stage.labels_BN[0], stage.stage, grid)), f"stage {stage.stage} structure"),
                  (to_pil(pipe.decode(stage.canvas_BNC[:1]))[0], f"stage {stage.stage} canvas")]
        yield list(strip), [], {}, f"stage {stage.stage + 1} of {pipe.num_stages} done (seed {seeds[0]})"
    classes_BS = pipe.class_ids(torch.full((len(seeds), pipe.num_stages), class_id))
    result = result_from_stages(stages, classes_BS, pipe.decode(stages[-1].canvas_BNC))
    yield strip, to_pil(result.images), _state(pipe, result, seeds), f"done: {_made(pipe, class_id, seeds)}"


def _image_index(result: NVGResult, index: Any) -> int:
    index = number(index, "image number", whole=True, low=-math.inf, high=math.inf)
    if not 0 <= index < len(result):
        raise UserError(f"image {index} does not exist; this result has {len(result)} (numbered from 0)")
    return index


def _result(pipe: NVGPipeline, state: dict | None) -> NVGResult:
    if not state or "result" not in state:
        raise UserError("generate an image first")
    if state.get("model", pipe.name) != pipe.name:
        raise UserError(f"the current images were made by the model {state['model']!r}, not {pipe.name!r}: "
                        "generate new ones with this model first")
    return state["result"]


def show_stage(pipe: NVGPipeline, state: dict | None, stage: int, index: int = 0
               ) -> tuple[Image.Image, Image.Image, Image.Image]:
    """One stage of the current result: coloured structure map, boundaries over the final image, canvas.

    Nothing to show (blank outputs) until there is a result.
    """
    if not state or "result" not in state:
        return None, None, None
    result = _result(pipe, state)
    stage, index = number(stage, "stage", whole=True, low=0, high=pipe.num_stages - 1), _image_index(result, index)
    return pipe.stage_view(result, index, stage, size=PREVIEW_SIZE)


def progression_gif(pipe: NVGPipeline, state: dict | None, index: int = 0) -> bytes | None:
    """A GIF (its bytes) of one image made coarse to fine: per stage, its structure map beside its canvas.

    None until there is a result. The last frame (the finished image) is held longest.
    """
    if not state or "result" not in state:
        return None
    result = _result(pipe, state)
    return pipe.progression_gif(result, _image_index(result, index), size=PREVIEW_SIZE)


def regenerate(pipe: NVGPipeline, state: dict | None, keep_stage: int, keep_content: bool, num_variations: int,
               class_name: str | None, seed: float | None, content_guidance: float, structure_guidance: float,
               flow_steps: int, top_p: float | None = None, index: int = 0) -> tuple[list[Image.Image], dict, str]:
    """Keep stages 0..keep_stage of the current image and resample the rest (optionally as another class)."""
    result = _result(pipe, state)
    keep_stage = number(keep_stage, "the kept stage", whole=True, low=0, high=pipe.num_stages - 2)
    if not isinstance(keep_content, bool):
        raise UserError(f"keep content must be true or false, got {str(keep_content)[:20]!r}")
    index = _image_index(result, index)
    target = class_of(pipe, class_name) if class_name else None
    seeds = seeds_for(seed, num_variations, "num_variations")
    variations = pipe.regenerate(result, from_stage=keep_stage + 1, keep_content=keep_content,
                                 class_labels=target, num_variations=len(seeds), seeds=seeds, index=index,
                                 options=sampling_options(pipe, content_guidance, structure_guidance, flow_steps, top_p))
    kept = "structure and content" if keep_content else "structure"
    made = _made(pipe, int(variations.class_labels_BS[0, -1]), seeds)
    return to_pil(variations.images), _state(pipe, variations, seeds), f"kept the {kept} of stages 0..{keep_stage}; {made}"


# --------------------------------------------------------------------------------------------------
# Sketch: a drawn layout becomes the structure of an early stage (nvg_core.sketch reads it)
# --------------------------------------------------------------------------------------------------


def sketch_structure(pipe: NVGPipeline, drawing: dict | str | np.ndarray | None, stage: int, mode: str = "palette"):
    """Project a sketch (the editor's dict, a file or an array) onto the nearest balanced tree up to `stage`;
    mode "palette" reads regions filled with palette colours, "outline" closed strokes of any colour."""
    composite = drawing.get("composite") if isinstance(drawing, dict) else drawing
    if composite is None:
        raise UserError("the sketch is empty: draw some regions first")
    stage = number(stage, "sketch_stage", whole=True)
    try:
        return sketch.project_sketch(composite, stage, grid=pipe.transformer.config.grid_size, mode=mode,
                                     max_stage=LIMITS["sketch_stage"][1])
    except ValueError as error:
        raise UserError(f"the sketch cannot be used: {error}") from error


def sketch_preview(pipe: NVGPipeline, drawing, stage: int, *, mode: str = "palette") -> tuple[Image.Image, str]:
    """The projected structure of a sketch and how well it keeps the drawn boundaries."""
    projection = sketch_structure(pipe, drawing, stage, mode)
    return _tile(render_map(projection.labels[-1], len(projection.labels) - 1)), \
        projection.summary()


def sketch_generate(pipe: NVGPipeline, drawing, stage: int, class_name: str, seed: float | None, num_images: int,
                    content_guidance: float, structure_guidance: float, flow_steps: int, top_p: float | None = None, *,
                    mode: str = "palette"):
    """Images of a class whose structure up to `stage` is the projected sketch."""
    projection = sketch_structure(pipe, drawing, stage, mode)
    class_id = class_of(pipe, class_name)
    seeds = seeds_for(seed, num_images)
    result = pipe.generate([class_id] * len(seeds), seeds=seeds, locks=Locks.from_structure(projection.labels),
                           options=sampling_options(pipe, content_guidance, structure_guidance, flow_steps, top_p))
    return (_tile(render_map(projection.labels[-1], len(projection.labels) - 1)), to_pil(result.images),
            _state(pipe, result, seeds), f"{projection.summary()}; {_made(pipe, class_id, seeds)}")


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
    """Every stage's structure map of an uploaded image, as a gallery."""
    image, note = _reference(image_path)
    maps_SN = pipe.extract_structure(image)
    gallery = [(_tile(render_map(maps_SN[s], s)), f"stage {s}") for s in range(len(maps_SN))]
    return gallery, "structure extracted" + (f" ({note})" if note else "")


def reference_generate(pipe: NVGPipeline, image_path: str | None, structure_stage: int, content_stage: int,
                       class_name: str, seed: float | None, num_images: int, content_guidance: float,
                       structure_guidance: float, flow_steps: int, top_p: float | None = None
                       ) -> tuple[list[Image.Image], dict, str]:
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
    result = pipe.generate([class_id] * len(seeds), seeds=seeds, locks=Locks.from_result(tokens, k, content_up_to=j),
                           options=sampling_options(pipe, content_guidance, structure_guidance, flow_steps, top_p))
    kept = f"structure of stages 0..{k}" + (f", content of stages 0..{j}" if j >= 0 else "")
    status = f"kept the reference's {kept}; {_made(pipe, class_id, seeds)}" + (f" ({note})" if note else "")
    return to_pil(result.images), _state(pipe, result, seeds), status


# --------------------------------------------------------------------------------------------------
# Edit: resample what lies under a painted mask, or one cluster, keeping the rest of the image
# --------------------------------------------------------------------------------------------------


def edit_background(pipe: NVGPipeline, state: dict | None, index: int = 0) -> Image.Image | None:
    """The current image, enlarged with square pixels, as the background to paint a mask on."""
    if not state or "result" not in state:
        return None
    result = _result(pipe, state)
    image = to_pil(result.select(_image_index(result, index)).images)[0]
    return image.resize((EDIT_SIZE, EDIT_SIZE), Image.NEAREST)


def _painted(editor: dict | None) -> np.ndarray:
    """The union of the editor's painted layers (their opaque pixels), refused when nothing is painted."""
    layers = (editor or {}).get("layers") or []
    masks = [read_mask(layer) for layer in layers if layer is not None]
    if not masks or not any(m.any() for m in masks):
        raise UserError("paint over the part of the image to regenerate first")
    return np.any([m if m.shape == masks[0].shape else np.asarray(Image.fromarray(m).resize(masks[0].shape[::-1]))
                   for m in masks], axis=0)


def edit_region(pipe: NVGPipeline, state: dict | None, mask: dict | None, from_stage: int, class_name: str | None,
                num_variations: int, seed: float | None, content_guidance: float, structure_guidance: float,
                flow_steps: int, top_p: float | None = None, index: int = 0, cover: float = 1.0
                ) -> tuple[list[Image.Image], dict, str]:
    """Variations of the current image resampled under the painted mask from `from_stage` on (optionally
    as another class there); outside it every stage's codes, and the pixels, are the image's own."""
    result = _result(pipe, state)
    index = _image_index(result, index)
    from_stage = number(from_stage, "the edit stage", whole=True, low=0, high=pipe.num_stages - 1)
    cover = number(cover, "cover")
    source = result.select(index)
    painted = _painted(mask)
    try:
        locks = Locks.from_mask(source, painted, from_stage, cover=cover)
    except ValueError as error:
        raise UserError(f"the mask cannot be used: {error}") from error
    target = class_of(pipe, class_name) if class_name else None
    seeds = seeds_for(seed, num_variations, "num_variations")
    edited = pipe.regenerate(result, from_stage=from_stage, class_labels=target, num_variations=len(seeds),
                             seeds=seeds, index=index, locks=locks,
                             options=sampling_options(pipe, content_guidance, structure_guidance, flow_steps, top_p))
    freed = " ".join(f"{x:.0%}" for x in locks.freed_per_stage()[from_stage:])
    status = (f"resampled under the mask from stage {from_stage} (share of the image free at stages "
              f"{from_stage}..{pipe.num_stages - 1}: {freed}); {_made(pipe, int(edited.class_labels_BS[0, -1]), seeds)}")
    return to_pil(edited.images), _state(pipe, edited, seeds), status


def cluster_at(pipe: NVGPipeline, state: dict | None, stage: int, index: int, x: float, y: float, size: int) -> int:
    """The stage-`stage` cluster under the point (x, y) of an image shown `size` pixels wide."""
    result = _result(pipe, state)
    grid = pipe.transformer.spec.grid_size
    cell = min(int(y * grid / size), grid - 1) * grid + min(int(x * grid / size), grid - 1)
    return int(result.select(_image_index(result, index)).labels_BSN[0, int(stage), cell])


CLUSTER_ACTIONS = {"resample this cluster": "resample", "keep this cluster, resample the rest": "keep",
                   "copy this cluster's content from the donor image": "copy"}


def edit_cluster(pipe: NVGPipeline, state: dict | None, stage: int, cluster: int, action: str, num_variations: int,
                 seed: float | None, content_guidance: float, structure_guidance: float, flow_steps: int,
                 top_p: float | None = None, index: int = 0, *, donor: int = 1) -> tuple[list[Image.Image], dict, str]:
    """Resample one stage-`stage` cluster of the current image from that stage on, or everything but it, or
    give it the code that image number `donor` has there (Locks.from_donor) and resample its later stages."""
    result = _result(pipe, state)
    index = _image_index(result, index)
    stage = number(stage, "stage", whole=True, low=0, high=pipe.num_stages - 1)
    cluster = number(cluster, "cluster", whole=True, low=0, high=2**stage - 1)
    if action not in CLUSTER_ACTIONS:
        raise UserError(f"the action must be one of {', '.join(CLUSTER_ACTIONS)}, got {str(action)[:40]!r}")
    source, kind = result.select(index), CLUSTER_ACTIONS[action]
    if kind == "copy":
        donor = _image_index(result, donor)
        if donor == index:
            raise UserError("the donor must be another image of this result (set the donor image number)")
        locks = Locks.from_donor(source, result.select(donor), stage, cluster)
    else:
        locks = Locks.from_clusters(source, stage, [cluster], invert=kind == "keep")
    seeds = seeds_for(seed, num_variations, "num_variations")
    edited = pipe.regenerate(result, from_stage=stage, num_variations=len(seeds), seeds=seeds, index=index, locks=locks,
                             options=sampling_options(pipe, content_guidance, structure_guidance, flow_steps, top_p))
    return (to_pil(edited.images), _state(pipe, edited, seeds),
            f"{action} (stage {stage}, cluster {cluster}{f', donor image {donor}' if kind == 'copy' else ''}); "
            f"{_made(pipe, int(edited.class_labels_BS[0, -1]), seeds)}")
