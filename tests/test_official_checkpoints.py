"""Official-layout checkpoints of any size: conversion, refusals, and pinned outputs of a converted tiny model.

The pinned numbers (like diffusers' expected_slice) were recorded from the converted depth-2 checkpoint of
official_tiny.py with the default sampler (split_rule "official", the model's 25 flow steps) on CPU. Any
change to the conversion, the tree, the split, the schedules or the heads changes them.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nvg_core import official
from nvg_core.cli import main
from nvg_core.images import to_pixels, to_uint8
from nvg_core.pipeline import NVGPipeline
from nvg_core.sampling import SamplingOptions, official_options
from nvg_core.tokenizer import TOKENIZER_CONFIGS, NVGTokenizer
from nvg_core.transformer import TRANSFORMER_CONFIGS, NVGTransformer
from official_tiny import (TINY_AE, official_ae_keys, official_generator_keys, save_lightning, tiny_generator_config,
                           write_tiny_ae, write_tiny_generator)

KEYS = Path(__file__).resolve().parent / "data" / "official-keys"

PINNED_LABELS_BSN = [  # stages 1..4 (stage 0 is all zeros) of classes [1, 3], seeds [0, 1]
    [[0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 0, 0], [0, 2, 0, 3, 0, 0, 1, 2, 1, 2, 3, 3, 3, 2, 1, 1],
     [0, 4, 1, 7, 1, 0, 2, 5, 2, 5, 6, 6, 7, 4, 3, 3], [0, 8, 2, 14, 3, 1, 4, 10, 5, 11, 13, 12, 15, 9, 7, 6]],
    [[0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0], [0, 1, 1, 2, 0, 1, 1, 0, 3, 3, 2, 2, 3, 2, 3, 0],
     [1, 2, 2, 4, 1, 3, 3, 0, 7, 7, 4, 5, 6, 5, 6, 0], [2, 4, 5, 9, 3, 7, 6, 1, 14, 15, 8, 10, 13, 11, 12, 0]]]
PINNED_IDS = [
    [[11], [1]], [[8, 14], [1, 1]], [[14, 10, 6, 14], [5, 14, 14, 11]],
    [[14, 12, 14, 14, 1, 8, 14, 13], [14, 3, 1, 14, 14, 14, 13, 14]],
    [[14, 14, 3, 14, 3, 7, 14, 14, 13, 14, 14, 13, 14, 13, 14, 14],
     [14, 14, 8, 13, 14, 3, 14, 14, 14, 14, 14, 14, 14, 11, 13, 14]]]
PINNED_CANVAS_SLICE = [[0.977, 0.3892, -0.13, -1.7333], [-0.1812, -0.0307, 0.3788, -0.0861]]  # canvas[:, 0]
PINNED_PIXEL_SLICE = [[0.005, -0.5725, -0.2401, 0.007, -1.0, -0.3254, -0.5997, -0.1334],  # images[:, 0, 0]
                      [-0.9369, -0.9454, 0.0004, -0.1631, -0.9707, -0.3302, -0.511, -0.0002]]
PINNED_U8_ROW = [[128, 0, 0], [54, 0, 0], [96, 0, 0], [128, 0, 0], [0, 0, 68], [86, 0, 62], [51, 0, 118], [110, 14, 0]]
PINNED_ENCODED_LABELS = [8, 10, 11, 9, 14, 6, 4, 2, 3, 12, 5, 0, 15, 13, 7, 1]  # the last stage's map
PINNED_ENCODED_IDS = [[6], [12, 4], [4, 10, 8, 9], [14, 0, 8, 11, 11, 4, 2, 11],
                      [11, 6, 15, 11, 4, 6, 5, 7, 4, 1, 2, 1, 0, 7, 12, 7]]
PINNED_LATENT_SLICE = [0.2915, 0.1361, -0.7651, 0.1051]


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("official")
    return write_tiny_ae(folder / "ae.ckpt"), write_tiny_generator(folder / "d2.ckpt"), folder


@pytest.fixture(scope="module")
def converted(tiny_files):
    ae, generator, folder = tiny_files
    return NVGPipeline.from_pretrained(official.convert_official(ae, generator, folder / "model"), device="cpu")


def reference_image() -> np.ndarray:
    return (np.arange(8 * 8 * 3).reshape(8, 8, 3) * 5 % 256).astype(np.uint8)


def test_tiny_checkpoints_use_the_official_key_names():
    with torch.device("meta"):
        ae = official_ae_keys(NVGTokenizer.from_spec(TOKENIZER_CONFIGS["official-f16"]))
        d16 = official_generator_keys(NVGTransformer.from_spec(TRANSFORMER_CONFIGS["official-d16"]))
    expected_ae = json.loads((KEYS / "ae.json").read_text())["keys"]
    assert ae == {k: tuple(v) for k, v in expected_ae.items() if k != "total_visited_codes"}
    assert d16 == {k: tuple(v) for k, v in json.loads((KEYS / "d16.json").read_text())["keys"].items()}


@pytest.mark.parametrize("depth", [2, 3])
def test_any_official_layout_size_converts_with_its_architecture_read_from_the_checkpoint(tmp_path, depth):
    ae = write_tiny_ae(tmp_path / "ae.ckpt")
    generator = write_tiny_generator(tmp_path / f"d{depth}.ckpt", depth=depth)
    pipe = NVGPipeline.from_pretrained(official.convert_official(ae, generator, tmp_path / "model"), device="cpu")
    assert pipe.tokenizer.spec == TINY_AE and pipe.transformer.spec == tiny_generator_config(depth)
    assert pipe.name.startswith(f"nvg-official-d{depth}") and pipe.default_flow_steps == 25
    raw_state, _ = official.load_torch_checkpoint(generator)
    ema = raw_state["ema_model.nvgformer.content_embed.weight"]
    assert torch.equal(pipe.transformer.content_embed.weight, ema)  # the EMA copy by default
    ae_state, _ = official.load_torch_checkpoint(ae)
    assert torch.equal(pipe.tokenizer.encoder.conv_in.weight, ae_state["encoder.conv_in.conv.weight"])  # not the EMA AE


def test_raw_generator_weights_are_taken_when_asked(tiny_files):
    ae, generator, _ = tiny_files
    state, hyper_parameters = official.load_torch_checkpoint(generator)
    raw, _ = official.convert_official_generator(state, ema=False, hyper_parameters=hyper_parameters)
    assert torch.equal(raw["content_embed.weight"], state["nvgformer.content_embed.weight"])


def _rewrite(source: Path, target: Path, edit) -> Path:
    checkpoint = torch.load(source, weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, target)
    return target


def test_checkpoints_that_are_not_official_layout_are_refused_with_a_clear_message(tiny_files, tmp_path):
    ae, generator, _ = tiny_files
    out = tmp_path / "never"

    def convert(ae_path=ae, generator_path=generator):
        return official.convert_official(ae_path, generator_path, out)

    def no_start_canvas(c):
        for k in [k for k in c["state_dict"] if k.endswith("nvgformer.content_start_embed")]:
            del c["state_dict"][k]

    def pixel_unshuffle_stem(c):
        c["state_dict"]["encoder.conv_in.conv.weight"] = torch.zeros(32, 12, 3, 3)

    def wrong_depth_recorded(c):
        c["hyper_parameters"]["nvgformer_config"]["params"]["depth"] = 16

    def extra_class_projection(c):
        c["state_dict"]["ema_model.nvgformer.structure_class_proj.linear.weight"] = torch.zeros(64, 64)

    def other_codebook(c):
        c["state_dict"]["quantize.embedding.weight"] = torch.zeros(32, 4)

    cases = [
        (dict(generator_path=_rewrite(generator, tmp_path / "g1.ckpt", no_start_canvas)), "has no 'content_start_embed'"),
        (dict(ae_path=_rewrite(ae, tmp_path / "a1.ckpt", pixel_unshuffle_stem)), "not official-layout: its first conv reads 12"),
        (dict(generator_path=_rewrite(generator, tmp_path / "g2.ckpt", wrong_depth_recorded)), "depth=16 contradicts its tensors"),
        (dict(generator_path=_rewrite(generator, tmp_path / "g3.ckpt", extra_class_projection)),
         r"does not match the official architecture: missing \[\], unexpected \['structure_class_proj"),
        (dict(ae_path=_rewrite(ae, tmp_path / "a2.ckpt", other_codebook)), "n_embed=16 contradicts its tensors"),
    ]
    for paths, message in cases:
        with pytest.raises(ValueError, match=message):
            convert(**paths)
    assert not out.exists()


def test_an_ae_and_a_generator_that_do_not_fit_together_are_refused(tiny_files, tmp_path):
    ae, generator, _ = tiny_files

    def other_codebook(c):
        c["state_dict"]["quantize.embedding.weight"] = torch.zeros(32, 4)
        del c["hyper_parameters"]["n_embed"]

    with pytest.raises(ValueError, match="do not fit together: codebook_size 32 vs 16"):
        official.convert_official(_rewrite(ae, tmp_path / "a.ckpt", other_codebook), generator, tmp_path / "never")


def test_converted_tiny_model_gives_the_pinned_maps_codes_and_pixels(converted):
    result = converted.generate([1, 3], seeds=[0, 1])
    assert result.labels_BSN[:, 1:].tolist() == PINNED_LABELS_BSN and (result.labels_BSN[:, 0] == 0).all()
    assert [ids.tolist() for ids in result.ids] == PINNED_IDS
    assert torch.allclose(result.canvas_BNC[:, 0], torch.tensor(PINNED_CANVAS_SLICE), atol=1e-4)
    assert torch.allclose(result.images[:, 0, 0], torch.tensor(PINNED_PIXEL_SLICE), atol=1e-4)


def test_the_stable_split_rule_resolves_the_tied_splits_differently(converted):
    stable = converted.generate([1, 3], seeds=[0, 1], options=SamplingOptions(flow_steps=25, split_rule="stable"))
    assert stable.labels_BSN[:, 1:].tolist() != PINNED_LABELS_BSN  # the pinned maps depend on the authors' rule


def test_converted_tiny_model_encodes_to_the_pinned_tree_and_codes(converted):
    tokens = converted.encode(reference_image())
    assert tokens.labels_BSN[0, -1].tolist() == PINNED_ENCODED_LABELS
    assert [ids[0].tolist() for ids in tokens.ids] == PINNED_ENCODED_IDS
    assert torch.allclose(tokens.latent_BNC[0, 0], torch.tensor(PINNED_LATENT_SLICE), atol=1e-4)


def test_pipeline_encode_matches_the_encoder_on_contiguous_pixels(converted):
    pixels = to_pixels([reference_image()], TINY_AE.resolution)
    assert not pixels.is_contiguous()  # channels_last strides from the image conversion
    with torch.no_grad():
        direct = converted.tokenizer.encoder(pixels.contiguous()).flatten(2).transpose(1, 2)
    assert torch.equal(converted.encode(reference_image()).latent_BNC, direct)


def test_a_depth_2_official_layout_checkpoint_converts_and_generates_from_the_command_line(tiny_files, tmp_path, capsys):
    ae, generator, _ = tiny_files
    model = tmp_path / "nvg-d2"
    assert main(["convert", "--ae", str(ae), "--generator", str(generator), "--out", str(model)]) == 0
    out = tmp_path / "cat.png"
    assert main(["generate", "--model", str(model), "--class", "1", "--seed", "0", "--out", str(out), "--device", "cpu"]) == 0
    assert f"saved {out}" in capsys.readouterr().out
    pixels = np.asarray(Image.open(out))
    assert pixels.shape == (8, 8, 3) and pixels[0].tolist() == PINNED_U8_ROW
    pipe = NVGPipeline.from_pretrained(model, device="cpu")
    assert np.array_equal(pixels, to_uint8(pipe.generate([1], seeds=[0]).images)[0])


def test_a_converted_folder_is_a_diffusers_pipeline_folder(converted, tiny_files):
    from diffusers import DiffusionPipeline
    folder = tiny_files[2] / "model"
    assert {p.name for p in folder.iterdir()} == {"model_index.json", "tokenizer", "transformer"}
    pipe = DiffusionPipeline.from_pretrained(folder)
    assert type(pipe) is NVGPipeline and pipe.class_names == converted.class_names
    assert pipe.default_options == official_options(pipe.num_stages)
    stored = json.loads((folder / "model_index.json").read_text())["default_options"]
    assert stored["top_p"] == official_options(pipe.num_stages).top_p and stored["flow_steps"] == 25
    a, b = pipe.generate([1, 3], seeds=[0, 1]), converted.generate([1, 3], seeds=[0, 1])
    assert torch.equal(a.images, b.images) and a.labels_BSN[:, 1:].tolist() == PINNED_LABELS_BSN
