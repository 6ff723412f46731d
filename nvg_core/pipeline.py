"""NVGPipeline: a diffusers DiffusionPipeline of a tokenizer and a transformer, with the actions people use.

    pipe = NVGPipeline.from_pretrained()                # the bundled model (offline)
    images = pipe(class_labels=["fruit"], generator=torch.Generator().manual_seed(0)).images
    for stage in pipe.iter_stages(["fruit"], seeds=[0]): ...          # stage by stage, with previews
    maps = pipe.extract_structure(reference_image)                    # every stage's structure map
    result = pipe.generate(["fruit"], seeds=[1], locks=Locks.from_structure(maps[:4]))  # reuse stages 0..3
    variations = pipe.regenerate(result, from_stage=4, num_variations=4, class_labels=["flower"])
    edited = pipe.regenerate(result, from_stage=1, mask=mask_HW, num_variations=4)     # inpaint under the mask
    recipe.save_png(pipe(["fruit"], seeds=[2]).images[0], "fruit.png")                # the image and its recipe
    again = pipe.reproduce(recipe.read_recipe("fruit.png"))                           # the same pixels again

Every result carries a recipe per image (nvg_core.recipe): what made it, so that pipe.reproduce makes it
again bit for bit on the same device type. Images from pipe(...) hold it in image.info; recipe.save_png
writes it into the PNG (PIL's own image.save does not write text chunks).

A model folder is a diffusers pipeline folder: model_index.json (the registered modules, the class names,
the sampling defaults and the name) and one subfolder per network, tokenizer/ and transformer/, each with
config.json and diffusion_pytorch_model.safetensors. DiffusionPipeline.from_pretrained(folder) loads it
once nvg_core.pipeline is imported (diffusers looks pipeline classes up by name in its own namespace, so
this module registers NVGPipeline there). Everything runs in fp32 (the default dtype) under
inference_mode.
"""

from __future__ import annotations

import dataclasses
import difflib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import diffusers
import numpy as np
import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils import BaseOutput, is_accelerate_available
from PIL import Image

from . import recipe as recipes
from .images import (blend_outside, from_uint8, load_image, mask_at, resize_center_crop, to_pil, to_pixels, to_rgb,
                     to_uint8)
from .limits import DEFAULT_LIMITS, Limits, RunCost, estimate_cost
from .locks import Locks
from .recipe import Recipe
from .sampling import (Generators, NVGResult, SamplingOptions, StageOutput, class_schedule, iter_stages,
                       result_from_stages)
from .stepping import StagePath
from .structure import draw_boundaries, render_map
from .tokenizer import NVGTokenizer
from .transformer import NVGTransformer



def bundled(*parts: str) -> Path:
    """A file or folder shipped with NVG Studio from the repository's top level (weights/, assets/): inside
    nvg_core in an installed wheel (pyproject.toml maps it there), else at the top of the clone or Space."""
    package = Path(__file__).resolve().parent
    installed = package.joinpath(*parts)
    return installed if installed.exists() else package.parent.joinpath(*parts)


BUNDLED_MODEL = bundled("weights", "emoji32")
MODEL_INDEX = "model_index.json"
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")  # a hub repo id, e.g. someone/nvg-emoji32
CALLBACK_TENSOR_INPUTS = ["labels_BN", "ids_BK", "canvas_BNC", "next_labels_BN", "images"]  # StageOutput fields


def sampling_defaults(index: dict, num_stages: int, imposed: bool = False) -> SamplingOptions:
    """The sampling defaults a model_index.json stores, written out for a model of num_stages stages:
    "default_options" (SamplingOptions fields; a folder saved before they were all stored may leave some
    out: those are the authors' settings), or with `imposed`, for runs whose early stages are imposed (a
    reference, a sketch, locks), "transfer_options" where the folder has them."""
    key = "transfer_options" if imposed and index.get("transfer_options") is not None else "default_options"
    return SamplingOptions(**index.get(key, {})).explicit(num_stages)


def default_device() -> torch.device:
    """CUDA, then Apple MPS, then CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class NVGPipelineOutput(BaseOutput):
    """Images in the requested output_type ("pil": list of PIL images, "np": uint8 (B, H, W, 3) array,
    "pt": (B, 3, H, W) in [-1, 1]) and the NVGResult, for locking, regenerating and editing."""

    images: list[Image.Image] | np.ndarray | torch.Tensor
    result: NVGResult


class NVGPipeline(DiffusionPipeline):
    """Generation, structure extraction and regeneration with one NVG model.

    class_names, default_options (the model's tuned SamplingOptions; the authors' settings when not given)
    and name are registered config, stored in model_index.json. The pipeline is moved to `device` when one
    is given.
    """

    _callback_tensor_inputs = CALLBACK_TENSOR_INPUTS

    def __init__(self, tokenizer: NVGTokenizer, transformer: NVGTransformer, class_names: list[str] | None = None,
                 default_options: SamplingOptions | dict | None = None, name: str = "nvg",
                 device: str | torch.device | None = None, transfer_options: SamplingOptions | dict | None = None):
        super().__init__()
        class_names = list(class_names or [])
        if len(class_names) != transformer.spec.num_classes:
            raise ValueError(f"{len(class_names)} class names for a model of {transformer.spec.num_classes} classes")
        self.register_modules(tokenizer=tokenizer.eval(), transformer=transformer.eval())
        self.register_to_config(class_names=class_names, name=name)
        self.default_options = SamplingOptions(**default_options) if isinstance(default_options, dict) \
            else default_options or SamplingOptions()
        self.transfer_options = SamplingOptions(**transfer_options) if isinstance(transfer_options, dict) \
            else transfer_options
        if device is not None:
            self.to(device)

    @property
    def class_names(self) -> list[str]:
        return list(self.config.class_names)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def default_options(self) -> SamplingOptions:
        """The model folder's sampling defaults, every per-stage control a list (registered config, so
        save_pretrained keeps them). The library, `nvg`, the app, evaluation and benchmarks start from these."""
        return sampling_defaults(self.config, self.num_stages)

    @default_options.setter
    def default_options(self, options: SamplingOptions) -> None:
        """Store `options` written out (SamplingOptions.explicit), so the folder says every default."""
        self.register_to_config(default_options=dataclasses.asdict(options.explicit(self.num_stages)))

    @property
    def transfer_options(self) -> SamplingOptions:
        """The sampling defaults for runs whose early stages are imposed (locks: a reference, a sketch, a
        lock or an edit): measured apart from free generation's (the model card), default_options where the
        folder has none."""
        return sampling_defaults(self.config, self.num_stages, imposed=True)

    @transfer_options.setter
    def transfer_options(self, options: SamplingOptions | None) -> None:
        self.register_to_config(transfer_options=None if options is None
                                else dataclasses.asdict(options.explicit(self.num_stages)))

    def options_for(self, locks: Locks | None) -> SamplingOptions:
        """The sampling defaults of a run: transfer_options when it imposes stages, else default_options."""
        return self.default_options if locks is None else self.transfer_options

    @property
    def default_flow_steps(self) -> int:
        return self.default_options.flow_steps

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None = None,
                        device: str | torch.device | None = None, **kwargs) -> NVGPipeline:
        """Load a model folder, a diffusers hub repo, or (no argument) the bundled model ($NVG_MODEL overrides
        that default), in fp32 unless `dtype` says otherwise, on `device` (default: the best available).

        Other keyword arguments go to DiffusionPipeline.from_pretrained (dtype, variant, revision, ...), which
        also handles the hub cache and HF_HUB_OFFLINE. The authors' hub ids: official.load_pipeline.
        """
        source = pretrained_model_name_or_path or os.environ.get("NVG_MODEL") or BUNDLED_MODEL
        folder = Path(source)
        if folder.exists() and not (folder / MODEL_INDEX).is_file():
            raise FileNotFoundError(f"{folder} is not a model folder: {MODEL_INDEX} is missing")
        if not folder.exists() and not (isinstance(source, str) and HUB_ID.fullmatch(source)):
            raise FileNotFoundError(f"no model folder at {folder}" + (
                " (the bundled model is not in this checkout; pass a model folder or a hub id)"
                if source == BUNDLED_MODEL else ""))
        kwargs.setdefault("dtype", torch.float32)
        kwargs.setdefault("low_cpu_mem_usage", is_accelerate_available())  # else diffusers warns on every load
        pipe = super().from_pretrained(str(source), **kwargs)
        return pipe.to(device or default_device())

    @classmethod
    def from_recipe(cls, recipe: Recipe, pretrained_model_name_or_path: str | os.PathLike | None = None,
                    device: str | torch.device | None = None, **kwargs) -> NVGPipeline:
        """The model that made a recipe's image, ready for pipe.reproduce(recipe).

        A recipe names its model by name and weights hash, not by a path: this loads the given folder or hub
        id as from_pretrained does (default: the bundled model, or $NVG_MODEL) and refuses it with a
        ValueError naming both models unless its weights are the recipe's.
        """
        pipe = cls.from_pretrained(pretrained_model_name_or_path, device=device, **kwargs)
        recipes.check_model(recipe, pipe)
        return pipe

    # ---------------------------------------------------------------------------------------------
    # Classes and seeds
    # ---------------------------------------------------------------------------------------------

    @property
    def num_stages(self) -> int:
        return self.transformer.spec.num_stages

    def class_id(self, name_or_id: str | int) -> int:
        """A class id from a name (case-insensitive) or an id; a clear error with suggestions otherwise."""
        if isinstance(name_or_id, (int, np.integer)) or str(name_or_id).strip().isdigit():
            class_id = int(name_or_id)
            if not 0 <= class_id < len(self.class_names):
                raise ValueError(f"class id {class_id} is out of range [0, {len(self.class_names)})")
            return class_id
        lowered = [n.lower() for n in self.class_names]
        name = str(name_or_id).strip().lower()
        if name in lowered:
            return lowered.index(name)
        close = difflib.get_close_matches(name, lowered, n=3)
        raise ValueError(f"unknown class {name_or_id!r}" + (f"; did you mean {', '.join(close)}?" if close else
                         f"; known classes: {', '.join(self.class_names[:40])}"))

    def class_ids(self, class_labels: Sequence[str | int] | str | int | torch.Tensor) -> torch.Tensor:
        """(B,) or (B, S) class ids from names or ids."""
        if isinstance(class_labels, torch.Tensor):
            return class_schedule(class_labels, self.num_stages, len(self.class_names))
        if isinstance(class_labels, (str, int)):
            class_labels = [class_labels]
        return torch.tensor([self.class_id(c) for c in class_labels], dtype=torch.long)

    @staticmethod
    def generators(seeds: Sequence[int]) -> list[torch.Generator]:
        """One CPU generator per image: a seed gives the same image whatever the batch or device."""
        return [torch.Generator().manual_seed(int(s)) for s in seeds]

    def _inputs(self, class_labels, seeds, generator, options, locks) -> tuple:
        """Sampler arguments shared by iter_stages and generate: class ids, generators, options, locks."""
        class_B = self.class_ids(class_labels)
        return class_B, self._generators(len(class_B), seeds, generator), options or self.options_for(locks), locks

    def _generators(self, batch: int, seeds: Sequence[int] | None, generator: Generators) -> Generators:
        if seeds is not None:
            if len(seeds) != batch:
                raise ValueError(f"got {len(seeds)} seeds for {batch} images")
            return self.generators(seeds)
        return generator

    # ---------------------------------------------------------------------------------------------
    # Generation
    # ---------------------------------------------------------------------------------------------

    def iter_stages(self, class_labels, seeds: Sequence[int] | None = None, generator: Generators = None,
                    options: SamplingOptions | None = None, locks: Locks | None = None, preview: bool = True,
                    structure_noise: torch.Tensor | None = None, limits: Limits | None = None) -> Iterator[StageOutput]:
        """Stage-by-stage generation (see sampling.iter_stages); previews are decoded when asked.

        The run is checked against `limits` (default: nvg_core.limits.DEFAULT_LIMITS) before anything is
        computed, a LimitError naming the bound passed; with a time budget it stops with TimeBudgetExceeded
        once the budget, counted from this call, has passed."""
        limits = limits or DEFAULT_LIMITS
        class_B, generators, options, locks = self._inputs(class_labels, seeds, generator, options, locks)
        options.resolved(self.num_stages)  # every option checked (finite, in range) before the cost is estimated
        limits.check(self.transformer.spec, self.tokenizer.spec, len(class_B), options.flow_steps, self.device)
        return iter_stages(self.transformer, self.tokenizer, class_B, generators, options, locks, preview, structure_noise,
                           limits.deadline())

    def run_cost(self, num_images: int, options: SamplingOptions | None = None) -> RunCost:
        """The estimated time and peak memory of a run of `num_images` images on this pipeline's device
        (nvg_core.limits.estimate_cost), with `options` (default: the model's)."""
        flow_steps = (options or self.default_options).flow_steps
        return estimate_cost(self.transformer.spec, self.tokenizer.spec, num_images, flow_steps, self.device)

    def generate(self, class_labels, seeds: Sequence[int] | None = None, generator: Generators = None,
                 options: SamplingOptions | None = None, locks: Locks | None = None,
                 structure_noise: torch.Tensor | None = None,
                 on_stage: Callable[[StageOutput], None] | None = None, action: str = "generate",
                 limits: Limits | None = None) -> NVGResult:
        """Generate images; `locks` keeps maps and codes of a source (nvg_core.locks.Locks), `structure_noise`
        (B, N, D) replaces the drawn start noise of the structure flows; on_stage sees every StageOutput;
        `limits` bounds the run (see iter_stages).

        Each image gets a recipe that says `action` made it. It can be made again when its seeds are known:
        `seeds`, or fresh generators (seeded and not drawn from yet; one per image or one for the run).
        """
        seeds_B, shared_seed = recipes.run_seeds(seeds, generator)  # before the run draws from the generators
        stages = []
        for stage in self.iter_stages(class_labels, seeds, generator, options, locks, False, structure_noise, limits):
            stages.append(stage)
            if on_stage is not None:
                on_stage(stage)
        return self.collect(stages, class_labels, seeds_B, options, locks, action, shared_seed=shared_seed,
                            structure_noise=structure_noise)

    def collect(self, stages: Sequence[StageOutput], class_labels, seeds: Sequence[int] | None,
                options: SamplingOptions | None = None, locks: Locks | None = None, action: str = "generate", *,
                shared_seed: int | None = None, structure_noise: torch.Tensor | None = None,
                source: NVGResult | None = None, region_HW: np.ndarray | None = None) -> NVGResult:
        """The result of a finished run of iter_stages (called with the same arguments): the last canvas
        decoded, and a recipe per image saying `action` made it (seeds None and no shared_seed: it cannot be
        made again).

        source: the one-image result the run was made from; its recipe is kept as provenance. With a region
        (H, W) bool at the model's resolution, the images are the source's pixels beyond a 2-pixel feather
        outside it (images.blend_outside), and the recipes store both to do it again.
        """
        classes_BS = class_schedule(self.class_ids(class_labels), self.num_stages, len(self.class_names))
        result = result_from_stages(stages, classes_BS, self.decode(stages[-1].canvas_BNC))
        run = recipes.make_run(classes_BS, seeds, options or self.options_for(locks), locks, shared_seed, structure_noise)
        blended = None
        if region_HW is not None and source is not None and source.images is not None:
            kept_HW3 = to_uint8(source.images)[0]
            result.images = self._blend(result.images, kept_HW3, region_HW)
            blended = recipes.blend_data(region_HW, kept_HW3)
        provenance = None if source is None or not source.recipes else source.recipes[0]
        result.recipes = recipes.run_recipes(self, run, action, blended, provenance)
        return result

    def reproduce(self, recipe: Recipe, limits: Limits | None = None) -> NVGResult:
        """The image a recipe describes, made again: its whole run is run again (sampling is not batch-invariant
        bit for bit) and its image taken, and a masked edit's blend is re-applied. Exact on the device type
        that made it. A 1-image result whose recipe is `recipe`, to lock, edit or save again.

        ValueError when the loaded model's weights are not the recipe's (both named), when the seeds are
        unknown, or when the recipe's run is not valid (the field named); a LimitError when the run is larger
        than `limits` allow (see iter_stages; run_cost says what it costs first).
        """
        return self.reproduce_run([recipe], limits=limits)

    def reproduce_run(self, recipes_: Sequence[recipes.Recipe], limits: Limits | None = None) -> NVGResult:
        """The images of several recipes of one run (a result's recipes, in any order) made again with one run
        of it: what reproduce gives for each, in their order, for the cost of one. ValueError when the recipes
        are not of one run (or as reproduce)."""
        if not recipes_:
            raise ValueError("reproduce_run needs at least one recipe")
        first = recipes_[0]
        if any(r.run != first.run or r.blend != first.blend or r.model != first.model for r in recipes_[1:]):
            raise ValueError("the recipes are not of one run (their runs, blends or models differ)")
        recipes.check_model(first, self)
        out = self.generate(**recipes.run_arguments(first, self.num_stages), limits=limits).select([r.index for r in recipes_])
        if first.blend is not None:
            region_HW, kept_HW3 = recipes.blend_inputs(first.blend, self.transformer.spec.grid_size,
                                                    self.tokenizer.spec.resolution)
            out.images = self._blend(out.images, kept_HW3, region_HW)
        out.recipes = list(recipes_)
        return out

    @staticmethod
    def _blend(images: torch.Tensor, kept_HW3: np.ndarray, region_HW: np.ndarray) -> torch.Tensor:
        """images.blend_outside for every image: `kept` beyond a feather outside the region."""
        blended = np.stack([blend_outside(image, kept_HW3, region_HW) for image in to_uint8(images)])
        return from_uint8(blended).to(images.device)

    def __call__(self, class_labels, generator: Generators = None, output_type: str = "pil", return_dict: bool = True,
                 callback_on_step_end: Callable[[NVGPipeline, int, int, dict[str, Any]], dict] | None = None,
                 callback_on_step_end_tensor_inputs: Sequence[str] = ("canvas_BNC",),
                 **kwargs) -> NVGPipelineOutput | tuple:
        """diffusers-style call: images of the given classes (names or ids); other keyword arguments as in
        generate (seeds, options, locks, structure_noise). return_dict=False gives (images, result).

        One NVG stage is one diffusers step: the progress bar counts stages, and after each stage
        callback_on_step_end(pipe, step_index, timestep, callback_kwargs) is called with step_index = timestep
        = the stage and the requested StageOutput fields (CALLBACK_TENSOR_INPUTS; "images" decodes the canvas).
        What it returns is not fed back (the stage iterator owns the state): steer a run with locks.
        "pil" images carry their recipes in image.info: recipe.save_png(image, path) writes them.
        """
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        unknown = sorted(set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs))
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs {unknown} are not in {self._callback_tensor_inputs}")

        with self.progress_bar(total=self.num_stages) as bar:
            def on_stage(stage: StageOutput) -> None:
                if callback_on_step_end is not None:
                    inputs = {name: self.decode(stage.canvas_BNC) if name == "images" else getattr(stage, name)
                              for name in callback_on_step_end_tensor_inputs}
                    callback_on_step_end(self, stage.stage, stage.stage, inputs)
                bar.update()

            result = self.generate(class_labels, generator=generator, on_stage=on_stage, **kwargs)
        images = {"pil": to_pil, "np": to_uint8, "pt": lambda pixels: pixels}[output_type](result.images)
        if output_type == "pil":
            recipes.attach(images, result.recipes)
        return NVGPipelineOutput(images, result) if return_dict else (images, result)

    def regenerate(self, result: NVGResult, from_stage: int, keep_content: bool = True, class_labels=None,
                   num_variations: int = 1, seeds: Sequence[int] | None = None, index: int = 0,
                   options: SamplingOptions | None = None, mask: np.ndarray | None = None,
                   locks: Locks | None = None, blend: bool = True, action: str | None = None,
                   limits: Limits | None = None, cover: float = 0.0) -> NVGResult:
        """Variations of image `index` of `result` that keep part of it (seeds default to fresh random ones).

        Without a mask: keep stages 0..from_stage-1 (keep_content=False: only their maps) and resample the
        rest. With a mask (H, W), any size, nonzero = painted, an inpainting: from from_stage on every source
        cluster with a painted cell is resampled (Locks.from_mask; cover=1.0 frees only the clusters that
        lie wholly under the mask, the exact-cluster edit), and with blend (the default) the images are the
        source's pixels beyond a 2-pixel feather outside the painted mask (images.blend_outside). Or pass
        any `locks` made from this image: the blend is then by the mask when one is given, else by the
        cells free at the last stage. class_labels (one class) is used from from_stage on: a class swap,
        global without a mask, local with one. The recipes say `action` made the images (default: said
        from the arguments) and keep the source's recipe, and for a blend its region and the source's
        pixels. `limits` bounds the run (iter_stages).
        """
        lowest = 1 if mask is None and locks is None else 0  # a plain variation keeps at least stage 0
        if not lowest <= from_stage < self.num_stages:
            raise ValueError(f"from_stage must be in [{lowest}, {self.num_stages - 1}]"
                             f"{' (0 with a mask)' if lowest else ''}, got {from_stage}")
        if num_variations < 1:
            raise ValueError(f"num_variations must be at least 1, got {num_variations}")
        source = result.select(index)
        new = None if class_labels is None else int(self.class_ids(class_labels).view(-1)[0])
        action = action or _regenerate_action(from_stage, keep_content, mask is not None, locks is not None,
                                              None if new is None else self.class_names[new])
        if locks is None:
            locks = Locks.from_result(source, from_stage - 1, None if keep_content else -1) if mask is None \
                else Locks.from_mask(source, mask, from_stage, cover)
        region_HW = None
        if blend and mask is not None:
            region_HW = mask_at(mask, self.tokenizer.spec.resolution)
        elif blend and locks.free_BSN is not None:
            region_HW = self.cells_to_pixels(locks.free_BSN[0, -1])
        old_S = source.class_labels_BS[0].cpu()
        classes_S = torch.full_like(old_S, int(old_S[-1]) if new is None else new)
        if keep_content or mask is not None:
            classes_S[:from_stage] = old_S[:from_stage]
        seeds = self._seeds_or_fresh(seeds, num_variations)
        classes_BS = classes_S.expand(num_variations, -1)
        stages = list(self.iter_stages(classes_BS, seeds=seeds, options=options, locks=locks, preview=False, limits=limits))
        return self.collect(stages, classes_BS, seeds, options, locks, action, source=source, region_HW=region_HW)

    # ---------------------------------------------------------------------------------------------
    # Stepping: stages chosen one at a time (nvg_core.stepping)
    # ---------------------------------------------------------------------------------------------

    def next_stage(self, path: StagePath | None, class_label: str | int, num_candidates: int = 4,
                   seeds: Sequence[int] | None = None, options: SamplingOptions | None = None,
                   limits: Limits | None = None) -> list[StagePath]:
        """Candidates for the stage after `path` (None: stage 0), drawn as `class_label`, one per seed (default:
        num_candidates fresh ones): each is the path with that stage's codes and the split they lead to, and
        a preview of its canvas. Costs one stage: the path's stages are kept (its locks), not run again.
        options default to default_options (the stages are the model's own, only chosen by a person)."""
        stage = 0 if path is None else path.stage + 1
        if path is not None and path.complete:
            raise ValueError("every stage of this path is chosen: finish it")
        seeds = self._seeds_or_fresh(seeds, num_candidates)
        classes_BS = self._path_classes(path, class_label, len(seeds))
        locks = None if path is None else self._checked_locks(path)
        for out in self.iter_stages(classes_BS, seeds=seeds, options=options or self.default_options, locks=locks,
                                    preview=False, limits=limits):
            if out.stage == stage:
                break
        earlier_SN = torch.zeros(0, out.labels_BN.shape[1], dtype=torch.long) if path is None else path.labels_SN[:-1]
        maps_BSN = torch.cat([earlier_SN[None].expand(len(seeds), -1, -1), out.labels_BN[:, None].cpu()], dim=1)
        if out.next_labels_BN is not None:
            maps_BSN = torch.cat([maps_BSN, out.next_labels_BN[:, None].cpu()], dim=1)
        earlier = () if path is None else path.ids
        return [StagePath(maps_BSN[b], (*earlier, out.ids_BK[b]), classes_BS[b, :stage + 1].tolist(),
                          (*(() if path is None else path.seeds), seed), image)
                for b, (seed, image) in enumerate(zip(seeds, to_pil(self.decode(out.canvas_BNC))))]

    def finish(self, path: StagePath, num_images: int = 1, seeds: Sequence[int] | None = None,
               class_label: str | int | None = None, options: SamplingOptions | None = None,
               limits: Limits | None = None) -> NVGResult:
        """Images that keep every chosen stage of `path` and draw the others as `class_label` (default: the
        class of its last chosen stage), one per seed (default: num_images fresh ones). Their recipes hold the
        path (a locked run), so each is made again bit for bit. options: as next_stage."""
        seeds = self._seeds_or_fresh(seeds, num_images)
        class_label = path.class_ids[-1] if class_label is None else class_label
        return self.generate(self._path_classes(path, class_label, len(seeds)), seeds=seeds,
                             options=options or self.default_options, locks=self._checked_locks(path),
                             action=f"stepped: {path.chosen} chosen", limits=limits)

    def step_from(self, result: NVGResult, index: int = 0, stage: int = 0) -> StagePath:
        """Stages 0..stage of image `index` of a result (its maps, codes, classes and seed) as a path to step on
        from: next_stage draws candidates for stage + 1."""
        if not 0 <= stage < self.num_stages:
            raise ValueError(f"stage must be in [0, {self.num_stages - 1}], got {stage}")
        source = result.select(index)
        seed = source.recipes[0].seed if source.recipes else None
        return StagePath(source.labels_BSN[0, :stage + 2], tuple(i[0] for i in source.ids[:stage + 1]),
                         source.class_labels_BS[0, :stage + 1].tolist(), (seed,) * (stage + 1),
                         self.stage_canvases(result, index, stages=[stage])[0])

    @staticmethod
    def _seeds_or_fresh(seeds: Sequence[int] | None, count: int) -> list[int]:
        """The given seeds, or `count` fresh random ones."""
        if seeds is not None:
            return [int(s) for s in seeds]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"the number of candidates or images must be a whole number of at least 1, got {count!r}")
        return torch.randint(0, 2**31, (count,)).tolist()  # fresh

    def _path_classes(self, path: StagePath | None, class_label: str | int, batch: int) -> torch.Tensor:
        """(batch, S) class ids: the path's classes for its chosen stages, `class_label` for the others."""
        classes_S = torch.full((self.num_stages,), self.class_id(class_label), dtype=torch.long)
        if path is not None:
            classes_S[:len(path.class_ids)] = torch.tensor(path.class_ids)
        return classes_S.expand(batch, -1)

    def _checked_locks(self, path: StagePath) -> Locks:
        """The path's locks, refused unless it fits this model (grid, stages, codebook, classes)."""
        S, N = self.num_stages, self.transformer.spec.grid_size ** 2
        if path.labels_SN.shape[1] != N or len(path.labels_SN) > S or (path.complete and len(path.ids) != S):
            raise ValueError(f"this path's maps {tuple(path.labels_SN.shape)} do not fit this model ({S} stages of {N} positions)")
        vocab = self.transformer.spec.codebook_size
        if any(int(i.min()) < 0 or int(i.max()) >= vocab for i in path.ids):
            raise ValueError(f"this path's codes are not in this model's codebook of {vocab}")
        if any(not 0 <= c < len(self.class_names) for c in path.class_ids):
            raise ValueError(f"this path's classes are not in this model's {len(self.class_names)}")
        return path.locks

    def from_image(self, image, class_label: str | int) -> NVGResult:
        """An image as a result to lock, edit or regenerate: its tokenized maps and codes (class_label for
        every stage) and, as its images, the image itself at the model's resolution (what blending keeps).
        It has no recipe: edits of it store its pixels (the blend's source) instead."""
        tokens = self.encode(image)
        classes_BS = self.class_ids([class_label])[:, None].expand(-1, self.num_stages)
        pixels = from_uint8(np.asarray(resize_center_crop(to_rgb(load_image(image)), self.tokenizer.spec.resolution))[None])
        return NVGResult(classes_BS, tokens.labels_BSN, list(tokens.ids), tokens.final_BNC, pixels.to(self.device))

    def cells_to_pixels(self, cells_N: torch.Tensor | np.ndarray) -> np.ndarray:
        """(H, W) bool at the model's resolution: the latent cells that are set."""
        cells_N = np.asarray(cells_N.cpu() if isinstance(cells_N, torch.Tensor) else cells_N, bool)
        grid, size = self.transformer.spec.grid_size, self.tokenizer.spec.resolution
        return np.kron(cells_N.reshape(grid, grid), np.ones((size // grid, size // grid), bool)).astype(bool)

    # ---------------------------------------------------------------------------------------------
    # Reference images
    # ---------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def encode(self, images):
        """Tokenize images (PIL, arrays or paths): structure tree, codes per stage, canvases."""
        pixels = to_pixels(images, self.tokenizer.spec.resolution).to(self.device)
        return self.tokenizer.encode(pixels)

    @torch.inference_mode()
    def decode(self, latent_BNC: torch.Tensor) -> torch.Tensor:
        """Latent canvas -> pixels in [-1, 1]."""
        return self.tokenizer.decode_latent(latent_BNC.to(self.device))

    def extract_structure(self, image) -> np.ndarray:
        """Every stage's structure map of one image, (S, N) int64."""
        return self.encode(image).labels_BSN[0].cpu().numpy()

    # ---------------------------------------------------------------------------------------------
    # Pictures for people
    # ---------------------------------------------------------------------------------------------

    def structure_strip(self, labels_SN: np.ndarray, size: int = 128) -> Image.Image:
        """One row of every stage's coloured structure map."""
        return Image.fromarray(np.concatenate([render_map(labels_SN[s], s, size) for s in range(len(labels_SN))], axis=1))

    @torch.inference_mode()
    def stage_canvases(self, result: NVGResult, index: int = 0, stages: Sequence[int] | None = None) -> list[Image.Image]:
        """The decoded canvas after each of `stages` (default: every stage) of one image of a result."""
        source = result.select(index)
        canvases_SNC = self.tokenizer.canvas_after_each_stage(source.codes_BSN)[0]
        return to_pil(self.decode(canvases_SNC if stages is None else canvases_SNC[list(stages)]))

    def _stage_tiles(self, result: NVGResult, index: int, size: int
                     ) -> tuple[torch.Tensor, list[np.ndarray], list[np.ndarray]]:
        """One image's structure maps (S, N), and per stage its coloured map and its decoded canvas as
        size x size uint8 arrays (canvases scaled nearest-neighbour)."""
        labels_SN = result.select(index).labels_BSN[0]
        canvases = [np.asarray(im.resize((size, size), Image.NEAREST)) for im in self.stage_canvases(result, index)]
        return labels_SN, [render_map(labels_SN[s], s, size) for s in range(len(canvases))], canvases

    def stage_strip(self, result: NVGResult, index: int = 0, size: int = 128) -> Image.Image:
        """Two rows: each stage's structure map, and its decoded canvas with the cluster boundaries."""
        labels_SN, maps, canvases = self._stage_tiles(result, index, size)
        overlays = [draw_boundaries(c, labels_SN[s]) for s, c in enumerate(canvases)]
        return Image.fromarray(np.concatenate([np.concatenate(maps, 1), np.concatenate(overlays, 1)], 0))

    def progression_gif(self, result: NVGResult, index: int = 0, size: int = 128, frame_ms: int = 600,
                        last_frame_ms: int = 2000) -> bytes:
        """An animated GIF (its bytes) of one image made coarse to fine: a frame per stage, its structure
        map beside its canvas (size x size each); the last frame, the finished image, is held longest."""
        _, maps, canvases = self._stage_tiles(result, index, size)
        frames = [Image.fromarray(np.concatenate(pair, 1)) for pair in zip(maps, canvases)]
        buffer = io.BytesIO()
        frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], loop=0,
                       duration=[frame_ms] * (len(frames) - 1) + [last_frame_ms])
        return buffer.getvalue()

    def stage_view(self, result: NVGResult, index: int, stage: int, size: int = 128, highlight: int | None = None
                   ) -> tuple[Image.Image, Image.Image, Image.Image]:
        """One stage of one image, size x size each: its coloured structure map, its cluster boundaries
        drawn over the finished image (with `highlight`, that cluster as it is and the rest faded), and the
        decoded canvas after that stage."""
        if not 0 <= stage < self.num_stages:
            raise ValueError(f"stage must be in [0, {self.num_stages - 1}], got {stage}")
        source = result.select(index)
        labels_N = source.labels_BSN[0, stage]
        final = np.asarray(to_pil(source.images)[0].resize((size, size), Image.NEAREST))
        if highlight is not None:
            inside_HW = self.cells_to_pixels(labels_N == highlight)
            inside_HW = np.asarray(Image.fromarray(inside_HW).resize((size, size), Image.NEAREST))
            final = np.where(inside_HW[..., None], final, (final.astype(np.uint16) + 3 * 255) // 4).astype(np.uint8)
        canvas = self.stage_canvases(result, index, stages=[stage])[0].resize((size, size), Image.NEAREST)
        return Image.fromarray(render_map(labels_N, stage, size)), Image.fromarray(draw_boundaries(final, labels_N)), canvas


def _regenerate_action(from_stage: int, keep_content: bool, masked: bool, given_locks: bool, new_class: str | None) -> str:
    """What a regeneration did, in words for a recipe."""
    if masked:
        what = f"edit under a mask from stage {from_stage}"
    elif given_locks:
        what = f"edit from stage {from_stage} with given locks"
    else:
        what = f"regenerate from stage {from_stage} ({'structure and content' if keep_content else 'structure'} kept)"
    return what if new_class is None else f"{what} as {new_class}"


# diffusers resolves model_index.json's "_class_name" in its own namespace (custom classes otherwise need
# trust_remote_code and a copy of the code in the folder): naming this class there lets
# DiffusionPipeline.from_pretrained load NVG folders once nvg_core.pipeline is imported.
setattr(diffusers, NVGPipeline.__name__, NVGPipeline)
