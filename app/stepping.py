"""The Step tab's actions: an image's stages chosen one at a time from candidates, each a thin call into
NVGPipeline.next_stage, finish or step_from (nvg_core.stepping).

A visitor's stepping is a Stepper in a gr.State: one Level per stage reached, holding the path chosen before
it and the candidates drawn for it, so Back shows the stage before with its candidates as they were.
Candidates and finished images take their seeds in turn from one counter that Start sets from the Seed box
(-1: a random start): the same clicks from the same seed draw the same candidates. Every action returns
(stepper, candidates, chosen path, status), Finish (images, history, status, stepper).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from PIL import Image

from nvg_core import seeds as seeding
from nvg_core.pipeline import NVGPipeline
from nvg_core.stepping import StagePath

from . import handlers
from .handlers import UserError
from .history import History
from .limits import SERVER_LIMITS


@dataclass(frozen=True, eq=False)
class Level:
    """One stage reached: the path chosen before it (None before stage 0) and the candidates drawn for it
    (none once every stage is chosen)."""

    path: StagePath | None
    candidates: tuple[StagePath, ...]


@dataclass(frozen=True, eq=False)
class Stepper:
    """The stages reached, oldest first, for the model `model`; next_seed: the seed the next draw starts at."""

    model: str
    levels: tuple[Level, ...]
    next_seed: int

    @property
    def path(self) -> StagePath | None:
        """The stages chosen so far."""
        return self.levels[-1].path

    def seeds(self, count: int) -> tuple[list[int], Stepper]:
        """The next `count` seeds, and the stepper that goes on after them."""
        try:
            seeds = seeding.seeds_for(self.next_seed, count)
        except ValueError as error:
            raise UserError(f"{error}: press Start with a smaller seed") from error
        return seeds, replace(self, next_seed=seeds[-1] + 1)


def _tile(path: StagePath) -> Image.Image:
    """A path as the stage strip draws a stage: the split its last stage leads to, over its canvas."""
    stage, labels_N = path.shown_map()
    return handlers.stage_tile(labels_N, path.image, stage)


def _view(pipe: NVGPipeline, stepper: Stepper, status: str) -> tuple[Stepper, list, list, str]:
    """(stepper, candidate tiles, the chosen path's tiles, status) as the Step tab shows them."""
    top = stepper.levels[-1]
    names = pipe.class_names
    candidates = [(_tile(c), f"{n + 1}: seed {c.seeds[-1]}") for n, c in enumerate(top.candidates)]
    chosen = [(_tile(level.path), f"stage {level.path.stage}: {names[level.path.class_ids[-1]]}")
              for level in stepper.levels[1:]]
    return stepper, candidates, chosen, status


def _stepper(pipe: NVGPipeline, stepper: Any) -> Stepper:
    if not isinstance(stepper, Stepper) or not stepper.levels:
        raise UserError("press Start first (or Step from the viewed image)")
    if stepper.model != pipe.name:
        raise UserError(f"these stages were drawn by the model {stepper.model!r}: press Start to step with {pipe.name!r}")
    return stepper


def _draw(pipe: NVGPipeline, stepper: Stepper, path: StagePath | None, class_name: str, num_candidates: Any,
          advanced: tuple) -> tuple[tuple[StagePath, ...], Stepper]:
    """Candidates for the stage after `path`, drawn as the class with the stepper's next seeds."""
    class_id = handlers.class_of(pipe, class_name)
    count = handlers.number(num_candidates, "num_candidates", whole=True)
    seeds, stepper = stepper.seeds(count)
    candidates = pipe.next_stage(path, class_id, seeds=seeds, options=handlers.sampling_options(pipe, *advanced),
                                 limits=SERVER_LIMITS)
    return tuple(candidates), stepper


def _drawn(pipe: NVGPipeline, candidates: tuple[StagePath, ...]) -> str:
    stage = candidates[0].stage
    return (f"{len(candidates)} candidates for stage {stage} of 0..{pipe.num_stages - 1}, drawn as "
            f"{pipe.class_names[candidates[0].class_ids[-1]]}: click one to keep it")


def start(pipe: NVGPipeline, class_name: str, seed: Any, num_candidates: Any, content_guidance: float,
          structure_guidance: float, flow_steps: int, top_p: float | None = None) -> tuple:
    """Candidates for stage 0 of a new image; its seeds start at `seed` (-1: a random start)."""
    stepper = Stepper(pipe.name, (), handlers.seeds_for(seed, 1)[0])
    candidates, stepper = _draw(pipe, stepper, None, class_name, num_candidates,
                                (content_guidance, structure_guidance, flow_steps, top_p))
    return _view(pipe, replace(stepper, levels=(Level(None, candidates),)), _drawn(pipe, candidates))


def choose(pipe: NVGPipeline, stepper: Any, candidate: Any, class_name: str, num_candidates: Any,
           content_guidance: float, structure_guidance: float, flow_steps: int, top_p: float | None = None) -> tuple:
    """Keep candidate number `candidate` (from 1) and draw the candidates for the next stage (as the class
    now chosen: a class change from this stage on)."""
    stepper = _stepper(pipe, stepper)
    shown = stepper.levels[-1].candidates
    if not shown:
        raise UserError("every stage is chosen: press Finish, or Back to choose again")
    n = handlers.number(candidate, "candidate", whole=True, low=1, high=len(shown))
    path = shown[n - 1]
    if path.complete:
        return _view(pipe, replace(stepper, levels=(*stepper.levels, Level(path, ()))),
                     f"every stage is chosen (candidate {n} of the last stage): press Finish")
    candidates, stepper = _draw(pipe, stepper, path, class_name, num_candidates,
                                (content_guidance, structure_guidance, flow_steps, top_p))
    return _view(pipe, replace(stepper, levels=(*stepper.levels, Level(path, candidates))),
                 f"kept candidate {n} of stage {path.stage}; {_drawn(pipe, candidates)}")


def more(pipe: NVGPipeline, stepper: Any, class_name: str, num_candidates: Any, content_guidance: float,
         structure_guidance: float, flow_steps: int, top_p: float | None = None) -> tuple:
    """New candidates for the same stage (as the class now chosen), in place of the ones shown."""
    stepper = _stepper(pipe, stepper)
    path = stepper.path
    if path is not None and path.complete:
        raise UserError("every stage is chosen: press Finish, or Back to choose again")
    candidates, stepper = _draw(pipe, stepper, path, class_name, num_candidates,
                                (content_guidance, structure_guidance, flow_steps, top_p))
    return _view(pipe, replace(stepper, levels=(*stepper.levels[:-1], Level(path, candidates))),
                 f"new {_drawn(pipe, candidates)}")


def back(pipe: NVGPipeline, stepper: Any) -> tuple:
    """The stage before, with its candidates as they were."""
    stepper = _stepper(pipe, stepper)
    if len(stepper.levels) == 1:
        raise UserError("this is the first stage reached: there is nothing to go back to")
    stepper = replace(stepper, levels=stepper.levels[:-1])
    candidates = stepper.levels[-1].candidates
    return _view(pipe, stepper, f"back at stage {candidates[0].stage}: its candidates as they were; click one to keep it")


def finish(pipe: NVGPipeline, history: History | None, stepper: Any, class_name: str, num_images: Any,
           content_guidance: float, structure_guidance: float, flow_steps: int, top_p: float | None = None) -> tuple:
    """Images that keep the chosen stages and draw the rest as the class now chosen; they join the history as
    one entry. Returns (images, history, status, stepper)."""
    stepper = _stepper(pipe, stepper)
    path = stepper.path
    if path is None:
        raise UserError("click a candidate first: Finish keeps the stages chosen so far")
    class_id = handlers.class_of(pipe, class_name)
    seeds, stepper = stepper.seeds(handlers.number(num_images, "num_images", whole=True))
    result = pipe.finish(path, seeds=seeds, class_label=class_id, limits=SERVER_LIMITS,
                         options=handlers.sampling_options(pipe, content_guidance, structure_guidance, flow_steps, top_p))
    label = f"stepped {pipe.class_names[class_id]}: {path.chosen} chosen"
    rest = f"; stages {path.stage + 1}..{pipe.num_stages - 1} drawn as {pipe.class_names[class_id]}" \
        if not path.complete else ""
    return (handlers.result_images(pipe, result, seeds), handlers.record(history, pipe, result, seeds, label),
            f"finished: kept the chosen {path.chosen}{rest}, seed{'s' if len(seeds) > 1 else ''} "
            f"{', '.join(map(str, seeds))}", stepper)


def step_from(pipe: NVGPipeline, history: History | None, stage: Any, index: Any, class_name: str, seed: Any,
              num_candidates: Any, content_guidance: float, structure_guidance: float, flow_steps: int,
              top_p: float | None = None) -> tuple:
    """Keep stages 0..stage of the viewed image and draw candidates for the next one: each kept stage is a
    stage reached (Back goes through them, More draws others for it)."""
    entry = handlers.current_entry(pipe, history)
    i = handlers.image_index(entry.result, index)
    stage = handlers.number(stage, "stage", whole=True, low=0, high=pipe.num_stages - 2)
    paths = [pipe.step_from(entry.result, i, s) for s in range(stage + 1)]
    levels = tuple(Level(before, (path,)) for before, path in zip([None, *paths], paths))
    stepper = Stepper(pipe.name, levels, handlers.seeds_for(seed, 1)[0])
    candidates, stepper = _draw(pipe, stepper, paths[-1], class_name, num_candidates,
                                (content_guidance, structure_guidance, flow_steps, top_p))
    return _view(pipe, replace(stepper, levels=(*levels, Level(paths[-1], candidates))),
                 f"kept stages 0..{stage} of image {i + 1} ({entry.label}); {_drawn(pipe, candidates)}")
