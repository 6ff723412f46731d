import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nvg_core import official
from nvg_core.locks import Locks
from nvg_core.pipeline import NVGPipeline, sampling_defaults
from nvg_core.sampling import SamplingOptions, official_options
from nvg_core.structure import validate
from nvg_core.transformer import TRANSFORMER_CONFIGS

D16_KEYS = Path(__file__).resolve().parent / "data" / "official-keys" / "d16.json"


def test_save_and_load_give_the_same_images(tiny_pipeline, tmp_path):
    tiny_pipeline.save_pretrained(tmp_path / "model")
    loaded = NVGPipeline.from_pretrained(tmp_path / "model", device="cpu")
    assert loaded.class_names == tiny_pipeline.class_names and loaded.default_flow_steps == 3
    a = tiny_pipeline.generate(["cat"], seeds=[3])
    b = loaded.generate(["cat"], seeds=[3])
    assert torch.equal(a.images, b.images) and torch.equal(a.labels_BSN, b.labels_BSN)


def test_missing_model_folder_and_offline_hub_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model folder"):
        NVGPipeline.from_pretrained(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model_index.json is missing"):
        NVGPipeline.from_pretrained(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nvg convert"):  # the authors' checkpoints, converted on the fly
        official.load_pipeline("yikaiwang/nvg")  # HF_HUB_OFFLINE=1 in tests: nothing cached
    with pytest.raises(OSError, match="not fully cached"):  # a diffusers folder on the hub: diffusers' own cache
        NVGPipeline.from_pretrained("someone/nvg-emoji32")


def test_class_names_and_ids(tiny_pipeline):
    assert tiny_pipeline.class_id("Cat") == 2 and tiny_pipeline.class_id(3) == 3 and tiny_pipeline.class_id("1") == 1
    with pytest.raises(ValueError, match="did you mean cat"):
        tiny_pipeline.class_id("cta")
    with pytest.raises(ValueError, match="out of range"):
        tiny_pipeline.class_id(4)


def test_call_returns_the_requested_output_type(tiny_pipeline):
    out = tiny_pipeline(["apple", "dog"], generator=torch.Generator().manual_seed(0), output_type="np")
    assert out.images.shape == (2, 16, 16, 3) and out.images.dtype == np.uint8
    pil = tiny_pipeline("dog", generator=torch.Generator().manual_seed(0)).images
    assert isinstance(pil[0], Image.Image) and pil[0].size == (16, 16)
    with pytest.raises(ValueError, match="output_type"):
        tiny_pipeline("dog", output_type="latent")


def test_call_generate_and_iter_stages_take_the_same_structure_noise(tiny_pipeline):
    noise = torch.randn(1, 16, 4, generator=torch.Generator().manual_seed(7))
    called = tiny_pipeline("cat", generator=torch.Generator().manual_seed(1), output_type="pt", structure_noise=noise)
    generated = tiny_pipeline.generate(["cat"], seeds=[1], structure_noise=noise)
    streamed = list(tiny_pipeline.iter_stages(["cat"], seeds=[1], preview=False, structure_noise=noise))
    assert torch.equal(called.result.labels_BSN, generated.labels_BSN)
    assert torch.equal(torch.stack([s.labels_BN for s in streamed], dim=1), generated.labels_BSN)
    assert not torch.equal(generated.labels_BSN, tiny_pipeline.generate(["cat"], seeds=[1]).labels_BSN)
    with pytest.raises(ValueError, match="structure_noise must have shape"):
        tiny_pipeline.generate(["cat"], seeds=[1], structure_noise=noise[:, :8])


def test_iter_stages_streams_previews(tiny_pipeline):
    stages = list(tiny_pipeline.iter_stages(["boat"], seeds=[1]))
    assert len(stages) == tiny_pipeline.num_stages and all(s.images.shape == (1, 3, 16, 16) for s in stages)


def test_extracted_structure_is_valid_and_reused_exactly(tiny_pipeline):
    reference = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    maps = tiny_pipeline.extract_structure(reference)
    assert maps.shape == (tiny_pipeline.num_stages, 16)
    validate(maps)
    result = tiny_pipeline.generate(["dog", "dog"], seeds=[0, 1], locks=Locks.from_structure(maps[:3]))
    assert (result.labels_BSN[:, :3].numpy() == maps[:3]).all()


def test_regenerate_keeps_early_stages_and_swaps_class(tiny_pipeline):
    first = tiny_pipeline.generate(["apple"], seeds=[0])
    variations = tiny_pipeline.regenerate(first, from_stage=2, num_variations=3, class_labels="dog", seeds=[5, 6, 7])
    assert len(variations) == 3
    assert (variations.labels_BSN[:, :2] == first.labels_BSN[:, :2]).all()
    assert all((v == f).all() for v, f in zip(variations.ids[:2], first.ids[:2]))
    assert variations.class_labels_BS[0].tolist() == [0, 0, 3, 3, 3]
    structure_only = tiny_pipeline.regenerate(first, from_stage=3, keep_content=False, seeds=[9])
    assert (structure_only.labels_BSN[:, :3] == first.labels_BSN[:, :3]).all()
    with pytest.raises(ValueError, match="from_stage"):
        tiny_pipeline.regenerate(first, from_stage=0)


def test_stage_strip_shows_every_stage(tiny_pipeline):
    result = tiny_pipeline.generate(["cat"], seeds=[2], options=SamplingOptions(flow_steps=2))
    strip = tiny_pipeline.stage_strip(result, size=32)
    assert strip.size == (32 * tiny_pipeline.num_stages, 64)


def test_official_generator_keys_convert_from_the_ema_copy():
    keys = json.loads(D16_KEYS.read_text())["keys"]
    state = {}
    for k, shape in keys.items():
        state[k] = torch.zeros(shape, device="meta")
        state["ema_model." + k] = torch.zeros(shape, device="meta")
    state["nvgformer.scale_factors"] = state["ema_model.nvgformer.scale_factors"] = torch.tensor(
        [1.0, 4.1993, 3.4706, 3.0520, 2.7430, 2.4842, 2.2407, 2.0088, 1.7954, 1.6080])
    state["first_stage_model.encoder.conv_in.conv.weight"] = torch.zeros(1, device="meta")
    converted, config = official.convert_official_generator(state)
    assert config == TRANSFORMER_CONFIGS["official-d16"]  # the architecture is read from the shapes
    assert not any(k.startswith(("projector.", "rope_ids", "scale_factors")) for k in converted)
    state["ema_model.nvgformer.scale_factors"] = torch.ones(10)
    assert official.convert_official_generator(state)[1].scale_factors == (1.0,) * 10  # the checkpoint's buffer
    with pytest.raises(ValueError, match="no 'ema_model.nvgformer"):
        official.convert_official_generator({k: v for k, v in state.items() if not k.startswith("ema_model.")})


def test_the_model_folder_keeps_its_sampling_defaults(tmp_path):
    from dataclasses import replace

    from conftest import make_tiny_pipeline
    pipe = make_tiny_pipeline()
    pipe.default_options = replace(pipe.default_options, structure_guidance=[4.0, 4.0, 1.5, 2.0, 2.5])
    pipe.save_pretrained(tmp_path / "model")
    loaded = NVGPipeline.from_pretrained(tmp_path / "model", device="cpu")
    assert loaded.default_options == pipe.default_options
    assert torch.equal(loaded.generate(["cat"], seeds=[3]).labels_BSN, pipe.generate(["cat"], seeds=[3]).labels_BSN)
    index = json.loads((tmp_path / "model" / "model_index.json").read_text())
    assert sampling_defaults(index, pipe.num_stages) == pipe.default_options
    assert index["default_options"]["structure_guidance"] == [4.0, 4.0, 1.5, 2.0, 2.5]
    assert index["default_options"]["top_p"] == official_options(5).top_p  # written out, not None


def test_runs_that_impose_stages_use_the_folders_transfer_options(tmp_path):
    from dataclasses import replace

    from conftest import make_tiny_pipeline
    from nvg_core.locks import Locks
    pipe = make_tiny_pipeline()
    assert pipe.transfer_options == pipe.default_options  # a folder without them: the free defaults
    transfer = replace(pipe.default_options, content_guidance=[6.0] * 5, top_p=[1.0] * 5)
    pipe.transfer_options = transfer
    pipe.save_pretrained(tmp_path / "model")
    loaded = NVGPipeline.from_pretrained(tmp_path / "model", device="cpu")
    assert loaded.transfer_options == transfer and loaded.default_options == pipe.default_options
    source = loaded.generate(["cat"], seeds=[3])
    locks = Locks.from_result(source, 2, -1)
    imposed = loaded.generate(["dog"], seeds=[4], locks=locks)
    assert imposed.recipes[0].run["options"]["content_guidance"] == [6.0] * 5  # what ran, in the recipe
    assert source.recipes[0].run["options"]["content_guidance"] == pipe.default_options.content_guidance
    again = loaded.generate(["dog"], seeds=[4], locks=locks, options=transfer)
    assert torch.equal(imposed.images, again.images)
    assert loaded.regenerate(source, from_stage=2, class_labels="dog", seeds=[4]).recipes[0].run["options"] \
        == imposed.recipes[0].run["options"]  # regenerate locks too


def test_folders_that_leave_a_default_out_get_the_authors_setting():
    from dataclasses import replace
    index = {"default_options": {"top_p": None, "flow_steps": 2}}  # as folders were saved before
    assert sampling_defaults(index, 5) == replace(official_options(5), flow_steps=2)


def test_stage_view_shows_a_stages_map_its_boundaries_over_the_image_and_its_canvas(tiny_pipeline):
    from nvg_core.images import to_pil
    from nvg_core.structure import draw_boundaries, render_map
    result = tiny_pipeline.generate(["cat", "dog"], seeds=[1, 2])
    structure_map, overlay, canvas = tiny_pipeline.stage_view(result, 1, 2, size=32)
    labels_N = result.labels_BSN[1, 2]
    assert np.array_equal(np.asarray(structure_map), render_map(labels_N, 2, 32))
    final = np.asarray(to_pil(result.images)[1].resize((32, 32), Image.NEAREST))
    assert np.array_equal(np.asarray(overlay), draw_boundaries(final, labels_N))
    after = tiny_pipeline.stage_canvases(result, 1, stages=[2])[0].resize((32, 32), Image.NEAREST)
    assert np.array_equal(np.asarray(canvas), np.asarray(after))
    with pytest.raises(ValueError, match="stage must be in"):
        tiny_pipeline.stage_view(result, 0, tiny_pipeline.num_stages)


def test_progression_gif_has_a_map_and_canvas_frame_per_stage_and_holds_the_last(tiny_pipeline):
    import io

    from nvg_core.structure import render_map
    result = tiny_pipeline.generate(["cat", "dog"], seeds=[1, 2])
    with Image.open(io.BytesIO(tiny_pipeline.progression_gif(result, index=1, size=32))) as gif:
        assert gif.format == "GIF" and gif.n_frames == tiny_pipeline.num_stages and gif.size == (64, 32)
        durations = []
        for frame in range(gif.n_frames):
            gif.seek(frame)
            durations.append(gif.info["duration"])
            if frame == 3:
                assert np.array_equal(np.asarray(gif.convert("RGB"))[:, :32], render_map(result.labels_BSN[1, 3], 3, 32))
    assert durations == [600] * (tiny_pipeline.num_stages - 1) + [2000]


def test_compiled_blocks_make_the_same_images():
    from conftest import make_tiny_pipeline
    eager, compiled = make_tiny_pipeline(seed=5), make_tiny_pipeline(seed=5)
    compiled.transformer.compile_blocks()
    blocks = [*compiled.transformer.content_blocks, *compiled.transformer.structure_blocks]
    assert all(block._compiled_call_impl is not None for block in blocks)  # nn.Module.compile's wrapper
    a, b = (pipe.generate(["cat", "dog"], seeds=[1, 2]) for pipe in (eager, compiled))
    assert all(torch.equal(x, y) for x, y in zip(a.ids, b.ids)) and torch.equal(a.labels_BSN, b.labels_BSN)
    assert torch.allclose(a.images, b.images, atol=1e-5)
