"""Pure handler functions of the web app: plain inputs in, images / text / session state out.

Every action is one call into nvg_core; the UI (app/ui.py) only wires these to components, so tests can
call them directly. The session state is a dict holding the last NVGResult and the seeds used.
"""

from __future__ import annotations

import random
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from nvg_core.images import to_pil
from nvg_core.pipeline import NVGPipeline
from nvg_core.sampling import NVGResult, SamplingOptions, linear_schedule, result_from_stages
from nvg_core.structure import draw_boundaries, render_map

PREVIEW_SIZE = 192


class UserError(ValueError):
    """A problem with what the person asked for; the UI shows the message as it is."""


def resolve_seed(seed: float | int | None) -> int:
    """The seed to use: the given one, or a fresh random one when it is empty or -1."""
    if seed is None or int(seed) < 0:
        return random.randrange(2**31)
    return int(seed)


def sampling_options(pipe: NVGPipeline, content_guidance: float, structure_guidance: float, flow_steps: int) -> SamplingOptions:
    """Guidance ramps from 1 at stage 0 to the given values at the last stage (the official shape)."""
    S = pipe.num_stages
    return SamplingOptions(content_guidance=linear_schedule(1.0, float(content_guidance), S),
                           structure_guidance=linear_schedule(1.0, float(structure_guidance), S),
                           flow_steps=int(flow_steps))


def class_of(pipe: NVGPipeline, class_name: str | None) -> int:
    try:
        return pipe.class_id(class_name or "")
    except ValueError as error:
        raise UserError(str(error)) from error


def _tile(image: Image.Image | np.ndarray) -> Image.Image:
    image = image if isinstance(image, Image.Image) else Image.fromarray(image)
    return image.resize((PREVIEW_SIZE, PREVIEW_SIZE), Image.NEAREST)


def generate(pipe: NVGPipeline, class_name: str, seed: float | None, num_images: int, content_guidance: float,
             structure_guidance: float, flow_steps: int) -> Iterator[tuple[list, list[Image.Image], dict, str]]:
    """Stream a generation: after every stage, (stage strip, images so far, state, status text).

    The strip holds each finished stage's structure map and decoded canvas of the first image.
    """
    class_id = class_of(pipe, class_name)
    first_seed = resolve_seed(seed)
    seeds = [first_seed + i for i in range(max(1, int(num_images)))]
    options = sampling_options(pipe, content_guidance, structure_guidance, flow_steps)
    strip, stages = [], []
    for stage in pipe.iter_stages([class_id] * len(seeds), seeds=seeds, options=options, preview=True):
        stages.append(stage)
        images = to_pil(stage.images)
        strip += [(_tile(render_map(stage.labels_BN[0], stage.stage)), f"stage {stage.stage} structure"),
                  (_tile(images[0]), f"stage {stage.stage} canvas")]
        yield list(strip), images, {}, f"stage {stage.stage + 1} of {pipe.num_stages} done (seed {first_seed})"
    classes_BS = pipe.class_ids(torch.full((len(seeds), pipe.num_stages), class_id))
    result = result_from_stages(stages, classes_BS, stages[-1].images)
    state = {"result": result, "seeds": seeds, "class_name": pipe.class_names[class_id]}
    yield strip, to_pil(result.images), state, f"done: {pipe.class_names[class_id]}, seeds {seeds[0]}..{seeds[-1]}"


def _result(state: dict | None) -> NVGResult:
    if not state or "result" not in state:
        raise UserError("generate an image first")
    return state["result"]


def show_stage(pipe: NVGPipeline, state: dict | None, stage: int, index: int = 0) -> tuple[Image.Image, Image.Image, Image.Image]:
    """One stage of the current result: coloured structure map, boundaries over the final image, canvas.

    Nothing to show (blank outputs) until there is a result.
    """
    if not state or "result" not in state:
        return None, None, None
    result = state["result"]
    if not 0 <= int(stage) < pipe.num_stages:
        raise UserError(f"stage must be between 0 and {pipe.num_stages - 1}")
    if not 0 <= int(index) < len(result):
        raise UserError(f"image {index} does not exist; this result has {len(result)}")
    stage, source = int(stage), result.select(int(index))
    labels_N = source.labels_BSN[0, stage]
    canvas = pipe.decode(pipe.tokenizer.canvas_after_each_stage(source.codes_BSN[:, :stage + 1])[:, -1])
    final = np.asarray(_tile(to_pil(source.images)[0]))
    return _tile(render_map(labels_N, stage)), Image.fromarray(draw_boundaries(final, labels_N)), _tile(to_pil(canvas)[0])


def regenerate(pipe: NVGPipeline, state: dict | None, keep_stage: int, keep_content: bool, num_variations: int,
               class_name: str | None, seed: float | None, content_guidance: float, structure_guidance: float,
               flow_steps: int, index: int = 0) -> tuple[list[Image.Image], dict, str]:
    """Keep stages 0..keep_stage of the current image and resample the rest (optionally as another class)."""
    result = _result(state)
    if not 0 <= int(keep_stage) < pipe.num_stages - 1:
        raise UserError(f"the kept stage must be between 0 and {pipe.num_stages - 2}")
    target = class_of(pipe, class_name) if class_name else None
    first_seed = resolve_seed(seed)
    seeds = [first_seed + i for i in range(max(1, int(num_variations)))]
    variations = pipe.regenerate(result, from_stage=int(keep_stage) + 1, keep_content=bool(keep_content),
                                 class_labels=target, num_variations=len(seeds), seeds=seeds, index=int(index),
                                 options=sampling_options(pipe, content_guidance, structure_guidance, flow_steps))
    kept = "structure and content" if keep_content else "structure"
    name = pipe.class_names[int(variations.class_labels_BS[0, -1])]
    state = {"result": variations, "seeds": seeds, "class_name": name}
    return to_pil(variations.images), state, f"kept the {kept} of stages 0..{int(keep_stage)}; {name}, seeds {seeds[0]}..{seeds[-1]}"
