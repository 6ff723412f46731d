"""Pure handler functions of the web app: plain inputs in, images / text / session state out.

Every action is one call into nvg_core; the UI (app/ui.py) only wires these to components, so tests can
call them directly. The session state is a dict holding the last NVGResult and the seeds used.
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from nvg_core.images import to_pil
from nvg_core.pipeline import NVGPipeline
from nvg_core.sampling import NVGResult, SamplingOptions, result_from_stages, slow_then_fast_schedule
from nvg_core.structure import draw_boundaries, render_map

PREVIEW_SIZE = 192
GIF_DIR = Path(tempfile.gettempdir()) / "nvg_studio_gifs"  # Gradio copies each GIF to its cache at once
GIF_MAX_AGE_S = 600


class UserError(ValueError):
    """A problem with what the person asked for; the UI shows the message as it is."""


def resolve_seed(seed: float | int | None) -> int:
    """The seed to use: the given one, or a fresh random one when it is empty or -1."""
    if seed is None or int(seed) < 0:
        return random.randrange(2**31)
    return int(seed)


def sampling_options(pipe: NVGPipeline, content_guidance: float, structure_guidance: float, flow_steps: int,
                     top_p: float = 0.5) -> SamplingOptions:
    """The model's sampling defaults with the sliders' last-stage values: each guidance schedule is shifted
    so that its last stage takes the slider's value, the shift fading linearly to 0 at stage 0 (at the
    slider's default the model's own schedule, early-stage boosts included); top-p falls slowly then fast
    from 1 to the given value (the official shape)."""
    S = pipe.num_stages
    if not 0 < float(top_p) <= 1:
        raise UserError(f"top-p must be in (0, 1], got {top_p}")
    if not 1 <= int(flow_steps) <= 100:
        raise UserError(f"flow steps must be between 1 and 100, got {flow_steps}")
    defaults = pipe.default_options.resolved(S)
    ramp_S = np.linspace(0.0, 1.0, S)

    def ending_at(name: str, last: float) -> list[float]:
        return (np.asarray(defaults[name]) + (float(last) - defaults[name][-1]) * ramp_S).tolist()

    return dataclasses.replace(pipe.default_options, content_guidance=ending_at("content_guidance", content_guidance),
                               structure_guidance=ending_at("structure_guidance", structure_guidance),
                               top_p=slow_then_fast_schedule(1.0, float(top_p), S), flow_steps=int(flow_steps))


def class_of(pipe: NVGPipeline, class_name: str | None) -> int:
    if class_name is None or not str(class_name).strip():
        raise UserError("choose a class first")
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
             structure_guidance: float, flow_steps: int, top_p: float = 0.5
             ) -> Iterator[tuple[list, list[Image.Image], dict, str]]:
    """Stream a generation: after every stage, (stage strip, images so far, state, status text).

    The strip holds each finished stage's structure map and decoded canvas of the first image.
    """
    class_id = class_of(pipe, class_name)
    first_seed = resolve_seed(seed)
    seeds = [first_seed + i for i in range(max(1, int(num_images)))]
    options = sampling_options(pipe, content_guidance, structure_guidance, flow_steps, top_p)
    strip, stages = [], []
    for stage in pipe.iter_stages([class_id] * len(seeds), seeds=seeds, options=options, preview=True):
        stages.append(stage)
        images = to_pil(stage.images)
        strip += [(_tile(render_map(stage.labels_BN[0], stage.stage)), f"stage {stage.stage} structure"),
                  (_tile(images[0]), f"stage {stage.stage} canvas")]
        yield list(strip), images, {}, f"stage {stage.stage + 1} of {pipe.num_stages} done (seed {first_seed})"
    classes_BS = pipe.class_ids(torch.full((len(seeds), pipe.num_stages), class_id))
    result = result_from_stages(stages, classes_BS, stages[-1].images)
    yield strip, to_pil(result.images), _state(pipe, result, seeds), f"done: {_made(pipe, class_id, seeds)}"


def _image_index(result: NVGResult, index: int) -> int:
    if not 0 <= int(index) < len(result):
        raise UserError(f"image {index} does not exist; this result has {len(result)}")
    return int(index)


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
    if not 0 <= int(stage) < pipe.num_stages:
        raise UserError(f"stage must be between 0 and {pipe.num_stages - 1}")
    stage, index = int(stage), _image_index(result, index)
    source = result.select(index)
    labels_N = source.labels_BSN[0, stage]
    canvas = pipe.stage_canvases(result, index, stages=[stage])[0]
    final = np.asarray(_tile(to_pil(source.images)[0]))
    return _tile(render_map(labels_N, stage)), Image.fromarray(draw_boundaries(final, labels_N)), _tile(canvas)


def progression_gif(pipe: NVGPipeline, state: dict | None, index: int = 0) -> str | None:
    """A GIF file of one image made coarse to fine: per stage, its structure map beside its canvas.

    None until there is a result. The last frame (the finished image) is held longest.
    """
    if not state or "result" not in state:
        return None
    result = _result(pipe, state)
    index = _image_index(result, index)
    labels_SN = result.select(index).labels_BSN[0]
    frames = [Image.fromarray(np.concatenate([np.asarray(_tile(render_map(labels_SN[s], s))), np.asarray(_tile(canvas))], 1))
              for s, canvas in enumerate(pipe.stage_canvases(result, index))]
    GIF_DIR.mkdir(exist_ok=True)
    for old in GIF_DIR.glob("nvg_stages_*.gif"):  # a long-running server would otherwise fill the disk
        if time.time() - old.stat().st_mtime > GIF_MAX_AGE_S:
            old.unlink(missing_ok=True)
    with tempfile.NamedTemporaryFile(prefix="nvg_stages_", suffix=".gif", dir=GIF_DIR, delete=False) as file:
        frames[0].save(file, format="GIF", save_all=True, append_images=frames[1:], loop=0,
                       duration=[600] * (len(frames) - 1) + [2000])
    return file.name


def regenerate(pipe: NVGPipeline, state: dict | None, keep_stage: int, keep_content: bool, num_variations: int,
               class_name: str | None, seed: float | None, content_guidance: float, structure_guidance: float,
               flow_steps: int, top_p: float = 0.5, index: int = 0) -> tuple[list[Image.Image], dict, str]:
    """Keep stages 0..keep_stage of the current image and resample the rest (optionally as another class)."""
    result = _result(pipe, state)
    if not 0 <= int(keep_stage) < pipe.num_stages - 1:
        raise UserError(f"the kept stage must be between 0 and {pipe.num_stages - 2}")
    target = class_of(pipe, class_name) if class_name else None
    first_seed = resolve_seed(seed)
    seeds = [first_seed + i for i in range(max(1, int(num_variations)))]
    variations = pipe.regenerate(result, from_stage=int(keep_stage) + 1, keep_content=bool(keep_content),
                                 class_labels=target, num_variations=len(seeds), seeds=seeds, index=int(index),
                                 options=sampling_options(pipe, content_guidance, structure_guidance, flow_steps, top_p))
    kept = "structure and content" if keep_content else "structure"
    made = _made(pipe, int(variations.class_labels_BS[0, -1]), seeds)
    return to_pil(variations.images), _state(pipe, variations, seeds), f"kept the {kept} of stages 0..{int(keep_stage)}; {made}"


# --------------------------------------------------------------------------------------------------
# Sketch: a drawn layout becomes the structure of an early stage
# --------------------------------------------------------------------------------------------------

SKETCH_PALETTE = ["#ffffff", "#e6194b", "#3cb44b", "#4363d8", "#ffe119", "#f58231", "#911eb4", "#42d4f4", "#000000"]


def _palette_rgb() -> np.ndarray:
    return np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in SKETCH_PALETTE], dtype=np.int32)


def sketch_regions(sketch: dict | np.ndarray | None) -> np.ndarray:
    """The drawn regions (H, W) as palette indices, anti-aliasing removed.

    Every pixel goes to its nearest palette colour; colours that cover under 0.5% of the canvas (the
    blends along stroke edges) are dropped and their pixels re-snapped to the colours really used.
    White (the empty canvas) counts as a region of its own.
    """
    composite = sketch.get("composite") if isinstance(sketch, dict) else sketch
    if composite is None:
        raise UserError("the sketch is empty: draw some regions first")
    rgb = np.asarray(composite)[..., :3].astype(np.int32)
    if rgb.ndim != 3 or rgb.size == 0:
        raise UserError("the sketch could not be read as an image")
    distances = ((rgb[:, :, None, :] - _palette_rgb()[None, None]) ** 2).sum(-1)
    counts = np.bincount(distances.argmin(-1).ravel(), minlength=len(SKETCH_PALETTE))
    distances[:, :, counts < 0.005 * rgb.shape[0] * rgb.shape[1]] = np.iinfo(np.int32).max
    return distances.argmin(-1)


def sketch_structure(pipe: NVGPipeline, sketch: dict | np.ndarray | None, stage: int):
    """Project a sketch onto the nearest balanced tree up to `stage`; errors for empty or too busy sketches."""
    regions_HW = sketch_regions(sketch)
    used = len(np.unique(regions_HW))
    if used < 2:
        raise UserError("the sketch has a single colour: draw at least one region in a palette colour")
    if not 1 <= int(stage) <= 4:
        raise UserError("the sketch applies to a stage between 1 and 4")
    if used > 2 ** int(stage):
        raise UserError(f"the sketch has {used} colours but stage {int(stage)} has only {2 ** int(stage)} clusters: "
                        f"use at most {2 ** int(stage)} colours or a later stage")
    from nvg_core.structure import project
    return project(regions_HW, int(stage), grid=pipe.transformer.config.grid_size)


def sketch_preview(pipe: NVGPipeline, sketch, stage: int) -> tuple[Image.Image, str]:
    """The projected structure of a sketch and how well it keeps the drawn boundaries."""
    projection = sketch_structure(pipe, sketch, stage)
    return _tile(render_map(projection.labels[-1], int(stage))), f"agreement with the drawing: {projection.agreement:.0%}"


def sketch_generate(pipe: NVGPipeline, sketch, stage: int, class_name: str, seed: float | None, num_images: int,
                    content_guidance: float, structure_guidance: float, flow_steps: int, top_p: float = 0.5):
    """Images of a class whose structure up to `stage` is the projected sketch."""
    projection = sketch_structure(pipe, sketch, stage)
    class_id = class_of(pipe, class_name)
    first_seed = resolve_seed(seed)
    seeds = [first_seed + i for i in range(max(1, int(num_images)))]
    result = pipe.generate([class_id] * len(seeds), seeds=seeds, structure=np.stack([projection.labels] * len(seeds)),
                           options=sampling_options(pipe, content_guidance, structure_guidance, flow_steps, top_p))
    return (_tile(render_map(projection.labels[-1], int(stage))), to_pil(result.images), _state(pipe, result, seeds),
            f"agreement with the drawing: {projection.agreement:.0%}; {_made(pipe, class_id, seeds)}")


# --------------------------------------------------------------------------------------------------
# Reference: reuse the structure (and optionally the content) of an uploaded image
# --------------------------------------------------------------------------------------------------

MAX_UPLOAD_PIXELS = 40_000_000


def _reference(image_path: str | None):
    """Open an upload with clear messages; returns (PIL image, note about what was adapted)."""
    from nvg_core.images import load_image
    if not image_path:
        raise UserError("upload a reference image first")
    try:
        image = load_image(image_path)
    except ValueError as error:
        raise UserError(f"that file is not a usable image: {error}") from error
    if image.width * image.height > MAX_UPLOAD_PIXELS:
        raise UserError(f"the image is too large ({image.width}x{image.height}); "
                        f"the limit is {MAX_UPLOAD_PIXELS:,} pixels")
    notes = []
    if getattr(image, "is_animated", False):
        notes.append("animated: its first frame is used")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        notes.append("transparency composited on white")
    if image.mode in ("L", "I;16", "I", "F", "1"):
        notes.append("greyscale: used as grey RGB")
    return image, "; ".join(notes)


def extract_structure(pipe: NVGPipeline, image_path: str | None) -> tuple[list, str]:
    """Every stage's structure map of an uploaded image, as a gallery."""
    image, note = _reference(image_path)
    maps_SN = pipe.extract_structure(image)
    gallery = [(_tile(render_map(maps_SN[s], s)), f"stage {s}") for s in range(len(maps_SN))]
    return gallery, "structure extracted" + (f" ({note})" if note else "")


def reference_generate(pipe: NVGPipeline, image_path: str | None, structure_stage: int, content_stage: int,
                       class_name: str, seed: float | None, num_images: int, content_guidance: float,
                       structure_guidance: float, flow_steps: int, top_p: float = 0.5
                       ) -> tuple[list[Image.Image], dict, str]:
    """New images of a class that reuse the reference's structure up to `structure_stage` and, when
    `content_stage` >= 0, its content up to that stage (a class swap of the reference)."""
    image, note = _reference(image_path)
    k, j = int(structure_stage), int(content_stage)
    if not 0 <= k < pipe.num_stages:
        raise UserError(f"the structure stage must be between 0 and {pipe.num_stages - 1}")
    if j > k:
        raise UserError("content can only be kept up to the structure stage")
    tokens = pipe.encode(image)
    class_id = class_of(pipe, class_name)
    first_seed = resolve_seed(seed)
    seeds = [first_seed + i for i in range(max(1, int(num_images)))]
    n = len(seeds)
    result = pipe.generate([class_id] * n, seeds=seeds, structure=tokens.labels_BSN[:, :k + 1].expand(n, -1, -1).cpu(),
                           ids=[ids.expand(n, -1) for ids in tokens.ids[:j + 1]],
                           options=sampling_options(pipe, content_guidance, structure_guidance, flow_steps, top_p))
    kept = f"structure of stages 0..{k}" + (f", content of stages 0..{j}" if j >= 0 else "")
    status = f"kept the reference's {kept}; {_made(pipe, class_id, seeds)}" + (f" ({note})" if note else "")
    return to_pil(result.images), _state(pipe, result, seeds), status
