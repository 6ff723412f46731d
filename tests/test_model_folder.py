"""The model folder and the pipeline in diffusers' terms: layout, loading, dtype, callbacks, outputs; the bundled
weights give the images pinned before the folder moved to the diffusers layout; no import cycle in nvg_core."""

import ast
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from nvg_core.images import to_uint8
from nvg_core.pipeline import BUNDLED_MODEL, MODEL_INDEX, NVGPipeline, NVGPipelineOutput
from nvg_core.sampling import SamplingOptions, slow_then_fast_schedule
from nvg_core.tokenizer import NVGTokenizer
from nvg_core.transformer import NVGTransformer

PACKAGE = Path(__file__).resolve().parents[1] / "nvg_core"

# Measured with the hand-written folder format (commit 6f5da18) on CPU, fp32, at the model's default
# settings; the same with 1 and 2 threads. Image i: class PINNED_CLASSES[i], seed i, one batch.
PINNED_CLASSES = ["fruit", "heart", "bird", "flower"]
PINNED_SHA256 = [
    "1f18503251a309294253a57c9ff4797b7f9f5050dce83ffc6e92517288b7bedc",
    "d253cbd29780bf8f99e48c222780018bdb9790ecacbf3f2559ae32c328179c33",
    "284297dd722f65a12c8f4be320905d96604845534b6b7f9188842a0ac954e6bc",
    "fc7555bf2ac929c557d693ac126cda1424bd2f9808971f8359227c0eb584c847",
]
PINNED_CENTRE_PIXELS = [[154, 49, 46], [254, 104, 136], [191, 164, 181], [153, 93, 43]]
PINNED_LABELS_SHA256 = "ddee2d0532431eb24cd1bb308d233e887910d919de540da344cae07ddb340c1b"


def test_bundled_model_gives_the_images_pinned_before_the_re_save():
    pipe = NVGPipeline.from_pretrained(device="cpu")
    result = pipe.generate(PINNED_CLASSES, seeds=range(len(PINNED_CLASSES)))
    images_BHWC = to_uint8(result.images)
    assert [image[31, 31].tolist() for image in images_BHWC] == PINNED_CENTRE_PIXELS
    assert [hashlib.sha256(image.tobytes()).hexdigest() for image in images_BHWC] == PINNED_SHA256
    assert hashlib.sha256(result.labels_BSN.numpy().tobytes()).hexdigest() == PINNED_LABELS_SHA256


def test_bundled_folder_has_the_diffusers_layout_and_loads_with_diffusion_pipeline():
    files = {p.relative_to(BUNDLED_MODEL).as_posix() for p in BUNDLED_MODEL.rglob("*") if p.is_file()}
    for part in ("tokenizer", "transformer", "evaluator"):
        assert {f"{part}/config.json", f"{part}/diffusion_pytorch_model.safetensors"} <= files
    pipe = DiffusionPipeline.from_pretrained(BUNDLED_MODEL)
    assert type(pipe) is NVGPipeline and pipe.name == "emoji32" and pipe.num_stages == 9
    assert pipe.default_options.flow_steps == 2 and pipe.default_options.structure_guidance[:2] == [4.0, 4.0]
    assert pipe.transformer.dtype == torch.float32  # stored in float16, loaded in fp32 (NVGPipeline: always)


def test_bundled_folder_writes_out_every_sampling_default():
    stored = json.loads((BUNDLED_MODEL / MODEL_INDEX).read_text())["default_options"]
    assert set(stored) == {f.name for f in dataclasses.fields(SamplingOptions)}
    for name in ("content_guidance", "structure_guidance", "top_p", "top_k", "temperature"):
        assert isinstance(stored[name], list) and len(stored[name]) == 9, name
    assert stored["top_p"] == slow_then_fast_schedule(1.0, 0.5, 9)  # what the runtime filled in for None before
    assert stored["top_p"][1] == 0.978797174667785 and stored["top_k"] == [0] * 9 and stored["temperature"] == [1.0] * 9
    assert stored["content_guidance"] == [3.0, 3.0, 1.625, 1.9375, 2.25, 2.5625, 2.875, 3.1875, 3.5]
    assert (stored["flow_steps"], stored["split_rule"], stored["gumbel_split"]) == (2, "official", False)
    assert NVGPipeline.from_pretrained(device="cpu").default_options == SamplingOptions(**stored)


def test_bundled_folder_stores_the_transfer_settings_chosen_by_the_sweep():
    index = json.loads((BUNDLED_MODEL / MODEL_INDEX).read_text())
    stored = index["transfer_options"]
    assert set(stored) == {f.name for f in dataclasses.fields(SamplingOptions)}
    # bench/sweep_transfer.py (model card): no setting tried beat the free-generation schedules beyond the noise
    assert stored == index["default_options"]
    assert NVGPipeline.from_pretrained(device="cpu").transfer_options == SamplingOptions(**stored)


def test_pipeline_save_and_from_pretrained_round_trip_with_a_dtype(tiny_pipeline, tmp_path):
    tiny_pipeline.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = NVGPipeline.from_pretrained(tmp_path / "model", device="cpu")
    assert loaded.tokenizer.spec == tiny_pipeline.tokenizer.spec and loaded.transformer.spec == tiny_pipeline.transformer.spec
    assert loaded.transformer.dtype == torch.float32 and loaded.device == torch.device("cpu")
    half = NVGPipeline.from_pretrained(tmp_path / "model", device="cpu", dtype=torch.bfloat16)
    assert half.transformer.dtype == half.tokenizer.dtype == torch.bfloat16
    transformer = NVGTransformer.from_pretrained(tmp_path / "model", subfolder="transformer")
    assert all(torch.equal(a, b) for a, b in zip(transformer.state_dict().values(),
                                                  tiny_pipeline.transformer.state_dict().values()))
    assert NVGTokenizer.load_config(tmp_path / "model" / "tokenizer")["grid_size"] == 4


def test_callback_on_step_end_is_called_once_per_stage_with_the_stage_as_step(tiny_pipeline):
    calls = []

    def callback(pipe, step_index, timestep, callback_kwargs):
        calls.append((pipe, step_index, timestep, sorted(callback_kwargs), callback_kwargs["images"].shape))
        return {}

    out = tiny_pipeline("cat", generator=torch.Generator().manual_seed(2), callback_on_step_end=callback,
                        callback_on_step_end_tensor_inputs=["canvas_BNC", "images"])
    assert [(c[1], c[2]) for c in calls] == [(s, s) for s in range(tiny_pipeline.num_stages)]
    assert all(c[0] is tiny_pipeline and c[3] == ["canvas_BNC", "images"] and c[4] == (1, 3, 16, 16) for c in calls)
    assert torch.equal(out.result.labels_BSN, tiny_pipeline.generate(["cat"], seeds=[2]).labels_BSN)
    with pytest.raises(ValueError, match="latents"):
        tiny_pipeline("cat", callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents"])


def test_output_type_and_return_dict_follow_diffusers(tiny_pipeline):
    out = tiny_pipeline(["apple", "dog"], seeds=[0, 1], output_type="np")
    assert isinstance(out, NVGPipelineOutput) and out.images.dtype == np.uint8 and out.images.shape == (2, 16, 16, 3)
    assert out["images"] is out.images and len(out.result) == 2  # a BaseOutput: also a mapping
    images, result = tiny_pipeline(["apple", "dog"], seeds=[0, 1], output_type="pt", return_dict=False)
    assert torch.equal(images, result.images) and np.array_equal(to_uint8(images), out.images)
    assert isinstance(tiny_pipeline("dog", seeds=[0]).images[0], Image.Image)


def _intra_package_imports(path: Path) -> set[str]:
    """The nvg_core modules a file imports, at any level (function-level imports count too)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found |= {f"{base}.{a.name}" for a in node.names} | {base}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_nvg_core_has_no_import_cycle():
    files = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in PACKAGE.rglob("*.py")}
    graph = {m: {i for i in _intra_package_imports(p) if i in files and i != m} for m, p in files.items()}
    assert "nvg_core.official" in graph["nvg_core.cli"] and "nvg_core.pipeline" in graph["nvg_core.official"]

    def cycle_from(node, path):
        for nxt in sorted(graph[node]):
            if nxt in path:
                return path[path.index(nxt):] + [nxt]
            if (found := cycle_from(nxt, path + [nxt])) is not None:
                return found
        return None

    for module in sorted(graph):
        assert cycle_from(module, [module]) is None, f"import cycle: {' -> '.join(cycle_from(module, [module]))}"
