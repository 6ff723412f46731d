"""Recipes: what made an image, stored in its PNG, so that it can be made again bit for bit and opened to continue.

    images = pipe(["fruit", "fruit"], seeds=[1, 2]).images      # each carries its recipe in image.info
    recipe.save_png(images[1], "fruit.png")                      # PIL's own image.save drops text chunks
    again = pipe.reproduce(recipe.read_recipe("fruit.png"))      # the same pixels, as a 1-image NVGResult

A recipe names the model (its name and a hash of its weights), the image's class at every stage, its seed,
and the whole run that made it: every image's class schedule, all the seeds, the sampling options written
out and the locks (the source maps and codes that were kept). Sampling is not batch-invariant bit for bit
(batched matmuls round differently at another batch size, which can flip a sampled code), so an image is
made again by running its whole batch and taking its `index`: exact on the same device type and torch
build. A masked edit also stores the region it took from the new images (the painted mask, at the image's
resolution) and the source's pixels, so the blend outside it is re-applied without running the source again
(version 1 stored the cells freed at the last stage instead; such recipes are still read). `source` is the
recipe of the image an edit started from (provenance, the last PROVENANCE_DEPTH steps).

A PNG keeps the recipe as JSON in a compressed iTXt chunk (PNG_KEY) and a one-line summary for people
(PARAMETERS_KEY, as other image generators write). Arrays are stored as zlib + base64 of their raw
little-endian bytes (bools as bits); locked maps as the deepest map only (stage i = deepest >> (L-1-i)).
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import hashlib
import io
import json
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Protocol, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from .limits import MAX_ARRAY_BYTES, MAX_IMAGES
from .locks import Locks
from .sampling import Generators, SamplingOptions



class Model(Protocol):
    """What recipes need of a pipeline (NVGPipeline has it); recipes sit below the pipeline, not beside it."""
    name: str
    class_names: list[str]
    tokenizer: torch.nn.Module
    transformer: torch.nn.Module

RECIPE_FORMAT = "nvg-recipe"
RECIPE_VERSION = 2  # 2: a blend stores its region in pixels (region_HW); 1: in latent cells (free_N)
PNG_KEY = "nvg_recipe"  # PNG iTXt chunk with the recipe's JSON
PARAMETERS_KEY = "parameters"  # PNG text chunk with the one-line summary
PROVENANCE_DEPTH = 8  # source recipes kept: older ones are dropped, so a long chain of edits stays small
DTYPES = {"bool": "|u1", "uint8": "|u1", "uint16": "<u2", "int64": "<i8", "float32": "<f4"}  # stored arrays


@dataclass(frozen=True)
class Recipe:
    """What made one image (see the module docstring). `run` is shared by the recipes of one run: read it only."""

    model: dict  # {"name", "weights": weights_hash}
    class_names: list[str]  # this image's class at every stage
    seed: int | None  # this image's seed; None: drawn from a generator whose seed is unknown
    run: dict  # {"classes_BS", "seeds", "shared_seed", "options", "locks", "structure_noise"}: make_run
    index: int  # this image's place in the run
    action: str  # what made it, for people: "generate", "edit under a mask from stage 3", ...
    blend: dict | None = None  # masked edits: {"region_HW", "source_png"} (blend_data; version 1: "free_N")
    source: Recipe | None = None  # the recipe of the image this one was made from

    def to_dict(self) -> dict:
        """The recipe as JSON data (a copy: changing it leaves the recipe as it is)."""
        return copy.deepcopy({"format": RECIPE_FORMAT, "version": RECIPE_VERSION, "model": self.model,
                              "class_names": self.class_names, "seed": self.seed, "index": self.index,
                              "action": self.action, "run": self.run, "blend": self.blend,
                              "source": None if self.source is None else self.source.to_dict()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Recipe:
        """A recipe from its JSON; a ValueError naming the field when it is not one this version reads."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError, RecursionError) as error:
            raise ValueError(f"the recipe is not JSON: {str(error)[:80]}") from error
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any, prefix: str = "") -> Recipe:
        if not isinstance(data, dict):
            raise ValueError(f"the recipe{' field ' + repr(prefix[:-1]) if prefix else ''} must be a JSON object")
        _field(data, prefix + "format", lambda v: v == RECIPE_FORMAT, f"{RECIPE_FORMAT!r} (this is not an NVG recipe)")
        version = _field(data, prefix + "version", lambda v: _is_int(v) and v >= 1, "a whole number from 1")
        if version > RECIPE_VERSION:
            raise ValueError(f"recipe field {prefix + 'version'!r} is {version}: it was written by a newer nvg_core "
                             f"(this one reads version {RECIPE_VERSION}); update nvg_core to open it")
        run = _checked_run(_field(data, prefix + "run", lambda v: isinstance(v, dict), "an object"), prefix + "run")
        index = _field(data, prefix + "index", lambda v: _is_int(v) and 0 <= v < len(run["classes_BS"]),
                       f"an image of the run (0..{len(run['classes_BS']) - 1})")
        source = _field(data, prefix + "source", lambda v: v is None or isinstance(v, dict), "a recipe or null")
        if prefix.count("source.") >= PROVENANCE_DEPTH:
            source = None
        return cls(
            model=_field(data, prefix + "model", lambda v: isinstance(v, dict) and isinstance(v.get("name"), str)
                         and isinstance(v.get("weights"), str), 'an object with "name" and "weights" strings'),
            class_names=_field(data, prefix + "class_names", lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v)
                               and len(v) == len(run["classes_BS"][index]), "a class name per stage"),
            seed=_field(data, prefix + "seed", lambda v: v is None or _is_seed(v), "a seed (0..2^64-1) or null"),
            run=run, index=index,
            action=_field(data, prefix + "action", lambda v: isinstance(v, str), "a string"),
            blend=_field(data, prefix + "blend", lambda v: v is None or (isinstance(v, dict) and isinstance(v.get("source_png"), str)
                         and isinstance(v.get("region_HW", v.get("free_N")), dict)),
                         'null or an object with "region_HW" (version 1: "free_N") and "source_png"'),
            source=None if source is None else cls.from_dict(source, prefix + "source."))

    def parameters(self) -> str:
        """One line for people: classes by stage, seed, model, sampling options, locks and what made it."""
        run, options = self.run, self.run["options"]
        seed = "seed unknown (cannot be made again)" if self.seed is None else f"seed {self.seed}" + (
            " (one generator for the run)" if run["shared_seed"] is not None else "")
        parts = [f"class {_class_spans(self.class_names)}", seed,
                 f"model {self.model['name']} (weights {self.model['weights']})"]
        if len(run["classes_BS"]) > 1:
            parts.append(f"image {self.index + 1} of {len(run['classes_BS'])} in its run")  # numbered from 1, as on the page
        parts += [f"content guidance {_span(options['content_guidance'])}",
                  f"structure guidance {_span(options['structure_guidance'])}", f"top-p {_span(options['top_p'])}",
                  f"flow steps {options['flow_steps']}"]
        if any(options["top_k"]):
            parts.append(f"top-k {_span(options['top_k'])}")
        if any(t != 1 for t in options["temperature"]):
            parts.append(f"temperature {_span(options['temperature'])}")
        if options["gumbel_split"] or options["split_rule"] != "official":
            parts.append(f"splits {'gumbel, ' if options['gumbel_split'] else ''}{options['split_rule']}")
        if run["locks"] is not None:
            locks = run["locks"]
            content = f", content of stages 0..{locks['content_stages'] - 1}" if locks["content_stages"] else ""
            parts.append(f"locks: structure of stages 0..{locks['stages'] - 1}{content}"
                         + (", some cells free" if locks["free_BSN"] is not None else ""))
        if run["structure_noise"] is not None:
            parts.append("structure noise given")
        return "; ".join(parts + [self.action])


# --------------------------------------------------------------------------------------------------
# Building recipes
# --------------------------------------------------------------------------------------------------


def weights_hash(pipe: Model) -> str:
    """The first 12 hex digits of a sha256 over the tokenizer's and the transformer's weights (sorted keys,
    dtypes, shapes and raw bytes): which model made an image, whatever its folder or name. Computed once
    per pipeline (the weights of a loaded model are taken as fixed)."""
    cached = getattr(pipe, "_weights_hash", None)
    if cached is None:
        digest = hashlib.sha256()
        for name, module in (("tokenizer", pipe.tokenizer), ("transformer", pipe.transformer)):
            state = module.state_dict()
            for key in sorted(state):
                tensor = state[key].detach().cpu().contiguous()
                digest.update(f"{name}.{key}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
                digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        cached = pipe._weights_hash = digest.hexdigest()[:12]
    return cached


def fresh_seed(generator: torch.Generator) -> int | None:
    """The seed of a CPU generator that has drawn nothing since it was seeded; None for any other."""
    seed = generator.initial_seed()
    fresh = generator.device.type == "cpu" and torch.equal(generator.get_state(), torch.Generator().manual_seed(seed).get_state())
    return seed if fresh else None


def run_seeds(seeds: Sequence[int] | None, generator: Generators) -> tuple[list[int] | None, int | None]:
    """(per-image seeds, one shared seed) of a run, read before it draws: the given seeds, or those of fresh
    generators (one per image, or one for the run); (None, None) when they are unknown."""
    if seeds is not None:
        return [int(s) for s in seeds], None
    if isinstance(generator, torch.Generator):
        return None, fresh_seed(generator)
    per_image = [fresh_seed(g) for g in generator or []]
    return (per_image, None) if per_image and None not in per_image else (None, None)


def make_run(classes_BS: torch.Tensor, seeds: Sequence[int] | None, options: SamplingOptions, locks: Locks | None,
             shared_seed: int | None = None, structure_noise_BND: torch.Tensor | None = None) -> dict:
    """What re-runs a batch: the class at every stage of every image, the seeds, the options written out,
    the locks and the supplied structure noise."""
    return {"classes_BS": classes_BS.tolist(), "seeds": None if seeds is None else [int(s) for s in seeds],
            "shared_seed": shared_seed, "options": dataclasses.asdict(options.explicit(classes_BS.shape[1])),
            "locks": None if locks is None else encode_locks(locks),
            "structure_noise": None if structure_noise_BND is None else
            pack_array(torch.as_tensor(structure_noise_BND).detach().cpu().float().numpy())}


def blend_data(region_HW: np.ndarray, source_HW3: np.ndarray) -> dict:
    """A masked edit's blend: the region taken from the new images (H, W) bool and the source's pixels as a PNG."""
    buffer = io.BytesIO()
    Image.fromarray(source_HW3).save(buffer, format="PNG")
    return {"region_HW": pack_array(np.asarray(region_HW, bool)), "source_png": base64.b64encode(buffer.getvalue()).decode()}


def run_recipes(pipe: Model, run: dict, action: str, blend: dict | None = None,
                source: Recipe | None = None) -> list[Recipe]:
    """One recipe per image of a run (make_run) of `pipe`."""
    model = {"name": pipe.name, "weights": weights_hash(pipe)}
    seeds = run["seeds"] or [run["shared_seed"]] * len(run["classes_BS"])
    source = _trimmed(source, PROVENANCE_DEPTH - 1)
    return [Recipe(model, [pipe.class_names[c] for c in classes_S], seed, run, index, action, blend, source)
            for index, (classes_S, seed) in enumerate(zip(run["classes_BS"], seeds))]


def _trimmed(recipe: Recipe | None, depth: int) -> Recipe | None:
    """`recipe` with at most `depth` sources behind it."""
    if recipe is None or recipe.source is None:
        return recipe
    return dataclasses.replace(recipe, source=_trimmed(recipe.source, depth - 1) if depth > 0 else None)


# --------------------------------------------------------------------------------------------------
# Reading recipes back
# --------------------------------------------------------------------------------------------------


def check_model(recipe: Recipe, pipe: Model) -> None:
    """Refuse a pipeline whose weights are not those that made the recipe's image."""
    if recipe.model["weights"] != weights_hash(pipe):
        raise ValueError(f"this image was made with the model {recipe.model['name']} (weights {recipe.model['weights']}); "
                         f"the loaded model is {pipe.name} (weights {weights_hash(pipe)})")


def run_arguments(recipe: Recipe, num_stages: int) -> dict:
    """The keyword arguments of NVGPipeline.generate that run the recipe's batch again with a model of
    `num_stages` stages (a recipe of another stage count is refused)."""
    run = recipe.run
    if len(run["classes_BS"][0]) != num_stages:
        raise ValueError(f"recipe field 'run.classes_BS' has {len(run['classes_BS'][0])} stages per image; "
                         f"the loaded model has {num_stages}")
    if run["seeds"] is None and run["shared_seed"] is None:
        raise ValueError("this image cannot be made again: it was drawn from a generator whose seed is unknown")
    noise = run["structure_noise"]
    return {"class_labels": torch.tensor(run["classes_BS"]), "seeds": run["seeds"],
            "generator": None if run["shared_seed"] is None else torch.Generator().manual_seed(run["shared_seed"]),
            "options": SamplingOptions(**run["options"]),
            "locks": None if run["locks"] is None else decode_locks(run["locks"], "run.locks"),
            "structure_noise": None if noise is None else torch.from_numpy(unpack_array(noise, "run.structure_noise").copy())}


def blend_inputs(blend: dict, grid: int, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """(region (H, W) bool, source pixels (H, W, 3) uint8) of a recipe's blend, checked against the model (a
    grid x grid latent, resolution-pixel images); a version-1 blend's freed cells become their pixels."""
    if "region_HW" in blend:
        region_HW = unpack_array(blend["region_HW"], "blend.region_HW")
        if region_HW.shape != (resolution, resolution) or region_HW.dtype != bool:
            raise ValueError(f"recipe field 'blend.region_HW' must be {resolution}x{resolution} bits, "
                             f"got {region_HW.dtype} {region_HW.shape}")
    else:
        free_N = unpack_array(blend["free_N"], "blend.free_N")
        if free_N.shape != (grid * grid,) or free_N.dtype != bool:
            raise ValueError(f"recipe field 'blend.free_N' must be {grid * grid} bits, got {free_N.dtype} {free_N.shape}")
        region_HW = np.kron(free_N.reshape(grid, grid), np.ones((resolution // grid,) * 2, bool)).astype(bool)
    try:
        with Image.open(io.BytesIO(base64.b64decode(blend["source_png"], validate=True)), formats=["PNG"]) as image:
            if image.size != (resolution, resolution):
                raise ValueError(f"recipe field 'blend.source_png' must be {resolution}x{resolution}, got {image.size}")
            return region_HW, np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, Image.DecompressionBombError, binascii.Error) as error:
        raise ValueError("recipe field 'blend.source_png' is not a base64 PNG") from error


# --------------------------------------------------------------------------------------------------
# Locks and arrays as JSON
# --------------------------------------------------------------------------------------------------


def encode_locks(locks: Locks) -> dict:
    """Locks as JSON: the deepest locked map and the stage count (locked maps are trees), every locked
    stage's codes in one row per image, and the free positions as bits."""
    labels_BSN = locks.labels_BSN.cpu()
    return {"stages": labels_BSN.shape[1], "labels_BN": pack_array(_smallest(labels_BSN[:, -1])),
            "content_stages": len(locks.ids),
            "ids_BK": pack_array(_smallest(torch.cat([i.cpu() for i in locks.ids], dim=1))) if locks.ids else None,
            "free_BSN": None if locks.free_BSN is None else pack_array(locks.free_BSN.cpu().numpy())}


def decode_locks(data: dict, field: str = "locks") -> Locks:
    """The Locks that encode_locks wrote; a ValueError naming `field` when they are not valid locks."""
    if not isinstance(data, dict) or not {"stages", "labels_BN", "content_stages", "ids_BK", "free_BSN"} <= data.keys():
        raise ValueError(f"recipe field {field!r} must be an object with stages, labels_BN, content_stages, ids_BK, free_BSN")
    stages, content = data["stages"], data["content_stages"]
    if not (_is_int(stages) and _is_int(content) and 0 <= content <= stages <= 32):
        raise ValueError(f"recipe field {field + '.stages'!r} and its content_stages must satisfy 0 <= content <= stages <= 32")
    deepest_BN = unpack_array(data["labels_BN"], f"{field}.labels_BN").astype(np.int64)
    ids_BK = unpack_array(data["ids_BK"], f"{field}.ids_BK").astype(np.int64) if content else None
    free_BSN = None if data["free_BSN"] is None else unpack_array(data["free_BSN"], f"{field}.free_BSN")
    try:
        labels_BSN = torch.from_numpy(deepest_BN)[:, None, :] >> torch.arange(stages - 1, -1, -1)[None, :, None]
        ids = () if ids_BK is None else torch.from_numpy(ids_BK).split([2**s for s in range(content)], dim=1)
        return Locks(labels_BSN, tuple(ids), None if free_BSN is None else torch.from_numpy(free_BSN))
    except (ValueError, RuntimeError, IndexError) as error:
        raise ValueError(f"recipe field {field!r} is not valid locks: {str(error)[:120]}") from error


def pack_array(array: np.ndarray) -> dict:
    """An array (bool, uint8, uint16, int64 or float32) as JSON: dtype, shape, zlib + base64 of its raw bytes."""
    dtype = str(array.dtype)
    raw = np.packbits(array.ravel()) if dtype == "bool" else np.ascontiguousarray(array, DTYPES[dtype])
    return {"dtype": dtype, "shape": list(array.shape), "data": base64.b64encode(zlib.compress(raw.tobytes(), 9)).decode()}


def unpack_array(data: Any, field: str) -> np.ndarray:
    """The array pack_array wrote; a ValueError naming `field` for anything else."""
    try:
        dtype, shape = data["dtype"], tuple(int(n) for n in data["shape"])
        count, itemsize = math.prod(shape), np.dtype(DTYPES[dtype]).itemsize
        size = (count + 7) // 8 if dtype == "bool" else count * itemsize
        if min(shape, default=0) < 0 or size > MAX_ARRAY_BYTES:
            raise ValueError(f"shape {shape}")
        raw = zlib.decompressobj().decompress(base64.b64decode(data["data"], validate=True), size + 1)
        if len(raw) != size:
            raise ValueError(f"{len(raw)} bytes for {size}")
        array = np.frombuffer(raw, DTYPES[dtype])
        return (np.unpackbits(array, count=count).astype(bool) if dtype == "bool" else array).reshape(shape)
    except (KeyError, TypeError, ValueError, zlib.error) as error:
        raise ValueError(f"recipe field {field!r} is not a stored array (dtype, shape, data): {str(error)[:80]}") from error


def _smallest(values: torch.Tensor) -> np.ndarray:
    """Non-negative integers in the smallest stored dtype that holds them."""
    top = int(values.max()) if values.numel() else 0
    return values.numpy().astype(np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.int64)


# --------------------------------------------------------------------------------------------------
# PNG files
# --------------------------------------------------------------------------------------------------


def attach(images: list[Image.Image], recipes: Sequence[Recipe] | None) -> list[Image.Image]:
    """Put each recipe in its image's info (JSON and the one-line summary), where save_png finds it."""
    for image, recipe in zip(images, recipes or []):
        image.info[PNG_KEY], image.info[PARAMETERS_KEY] = recipe.to_json(), recipe.parameters()
    return images


def png_info(image: Image.Image) -> PngInfo:
    """The PNG text chunks of an image's recipe (none when it has none)."""
    info = PngInfo()
    if PARAMETERS_KEY in image.info and PNG_KEY in image.info:
        info.add_text(PARAMETERS_KEY, image.info[PARAMETERS_KEY])  # Latin-1 tEXt, or iTXt when it is not
        info.add_itxt(PNG_KEY, image.info[PNG_KEY], zip=True)
    return info


def png_bytes(image: Image.Image) -> bytes:
    """The image as a PNG file's bytes, with its recipe."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=png_info(image))
    return buffer.getvalue()


def save_png(image: Image.Image, path_or_buffer: str | os.PathLike | IO[bytes]) -> None:
    """Write the image as a PNG with its recipe; a path is written atomically (a temp file, then a rename)."""
    if not isinstance(path_or_buffer, (str, os.PathLike)):
        path_or_buffer.write(png_bytes(image))
        return
    path = Path(path_or_buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(png_bytes(image))
    tmp.replace(path)


def read_recipe(file: str | os.PathLike | bytes | IO[bytes] | Image.Image) -> Recipe | None:
    """The recipe a PNG carries (a path, the file's bytes or an opened image); None when it has none; a
    ValueError naming the field when it has one that cannot be read."""
    if isinstance(file, Image.Image):
        chunk = _chunk(file)
    elif not isinstance(file, (str, os.PathLike, bytes)) and not hasattr(file, "read"):
        raise ValueError(f"cannot read a recipe from a {type(file).__name__}; pass a PNG's path, bytes or an image")
    else:
        try:
            with Image.open(io.BytesIO(file) if isinstance(file, bytes) else file) as image:
                chunk = _chunk(image)
        except (UnidentifiedImageError, SyntaxError, Image.DecompressionBombError) as error:
            raise ValueError("the file is not an image that can be read") from error
        except ValueError as error:  # Pillow's limits on text chunks
            raise ValueError(f"the {PNG_KEY!r} chunk cannot be read: {error}") from error
    return None if chunk is None else Recipe.from_json(chunk)


def _chunk(image: Image.Image) -> str | None:
    """The recipe's JSON in an image: a PNG file's text chunks (before or after the pixels), else its info."""
    return (getattr(image, "text", None) or image.info).get(PNG_KEY)


# --------------------------------------------------------------------------------------------------
# Checks and words
# --------------------------------------------------------------------------------------------------


def _checked_run(run: dict, path: str) -> dict:
    """A recipe's run, refused with a ValueError naming the field unless it has every part."""
    classes = _field(run, f"{path}.classes_BS", lambda v: isinstance(v, list) and v and all(
        _ints(row) and row and len(row) == len(v[0]) for row in v), "a list of class ids per stage per image")
    if len(classes) > MAX_IMAGES:
        raise ValueError(f"recipe field {path + '.classes_BS'!r} has {len(classes)} images; a run has at most "
                         f"{MAX_IMAGES} (nvg_core.limits.MAX_IMAGES)")
    _field(run, f"{path}.seeds", lambda v: v is None or (isinstance(v, list) and len(v) == len(classes)
                                                           and all(_is_seed(s) for s in v)), "a seed per image or null")
    _field(run, f"{path}.shared_seed", lambda v: v is None or _is_seed(v), "a seed or null")
    options = _field(run, f"{path}.options", lambda v: isinstance(v, dict), "an object")
    try:
        SamplingOptions(**options).resolved(len(classes[0]))
    except (TypeError, ValueError) as error:
        raise ValueError(f"recipe field {path + '.options'!r} is not valid sampling options: {str(error)[:200]}") from error
    for name in ("locks", "structure_noise"):
        _field(run, f"{path}.{name}", lambda v: v is None or isinstance(v, dict), "an object or null")
    return run


def _field(data: dict, path: str, valid: Callable[[Any], bool], expected: str) -> Any:
    """data[the path's last part], refused with a ValueError naming the field unless valid(value)."""
    name = path.rsplit(".", 1)[-1]
    if name not in data:
        raise ValueError(f"recipe field {path!r} is missing")
    if not valid(data[name]):
        raise ValueError(f"recipe field {path!r} must be {expected}, got {json.dumps(data[name])[:40]}")
    return data[name]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_seed(value: Any) -> bool:
    return _is_int(value) and 0 <= value < 2**64


def _ints(value: Any) -> bool:
    return isinstance(value, list) and all(_is_int(v) and v >= 0 for v in value)


def _span(values: Sequence[float]) -> str:
    """A schedule in a few characters: its value, or first->last."""
    return f"{values[0]:g}" if len(set(values)) == 1 else f"{values[0]:g}->{values[-1]:g}"


def _class_spans(names: Sequence[str]) -> str:
    """heart, or heart (stages 0-3), smiley (4-8)."""
    spans, start = [], 0
    for s in range(1, len(names) + 1):
        if s == len(names) or names[s] != names[start]:
            spans.append((names[start], start, s - 1))
            start = s
    if len(spans) == 1:
        return names[0]
    return ", ".join(f"{name} ({'stages ' if i == 0 else ''}{a}-{b})" if a != b else f"{name} ({'stage ' if i == 0 else ''}{a})"
                     for i, (name, a, b) in enumerate(spans))
