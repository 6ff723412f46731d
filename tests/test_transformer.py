"""NVG transformer: shapes, the official key/shape layout and sizes, structure-aware RoPE, conditioning."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from nvg_core.structure import bit_codes, build_tree
from nvg_core.transformer import (TRANSFORMER_CONFIGS, NVGTransformer, StructureRoPE, TransformerConfig,
                                  parameter_counts, rope_axes, timestep_embedding)

OFFICIAL_KEYS = Path(__file__).resolve().parent / "data" / "official-keys" / "d16.json"
# Official nvgformer keys this port does not hold: the REPA projector (training only), and two buffers
# that are configuration here (RoPE ids are built per call; scale factors live in TransformerConfig).
DROPPED_KEYS = ("projector.", "rope_ids", "scale_factors")


def tiny_model(layout: str = "official", seed: int = 0) -> NVGTransformer:
    torch.manual_seed(seed)
    return NVGTransformer.from_spec(replace(TRANSFORMER_CONFIGS["tiny"], structure_layout=layout)).eval()


def tiny_inputs(batch: int = 2, seed: int = 0):
    cfg = TRANSFORMER_CONFIGS["tiny"]
    g = torch.Generator().manual_seed(seed)
    labels_BSN = build_tree(torch.randn(batch, cfg.num_positions, 3, generator=g))
    canvas_BNC = torch.randn(batch, cfg.num_positions, cfg.latent_channels, generator=g)
    return labels_BSN, canvas_BNC


@pytest.mark.parametrize("layout", ["official", "additive"])
def test_output_shapes(layout):
    model = tiny_model(layout)
    cfg = model.spec
    labels_BSN, canvas_BNC = tiny_inputs()
    class_B = torch.tensor([0, cfg.num_classes])
    with torch.no_grad():
        for stage in range(cfg.num_stages):
            x0_BNC, logits_BKV = model.forward_content(canvas_BNC, labels_BSN[:, stage], stage, class_B)
            assert x0_BNC.shape == canvas_BNC.shape
            assert logits_BKV.shape == (2, 2**stage, cfg.codebook_size)
        for stage in range(cfg.num_structure_stages):
            state_BND = torch.randn(2, cfg.num_positions, cfg.num_bits)
            v_BND = model.forward_structure(canvas_BNC, state_BND, labels_BSN[:, stage], stage, torch.rand(2), class_B)
            assert v_BND.shape == state_BND.shape and torch.isfinite(v_BND).all()


def test_per_sample_stages_match_single_stage_calls():
    model = tiny_model()
    labels_BSN, canvas_BNC = tiny_inputs(batch=3)
    class_B = torch.tensor([1, 2, 3])
    stage_B = torch.tensor([0, 2, 4])
    rows = torch.arange(3)
    with torch.no_grad():
        x0_BNC, logits_BKV = model.forward_content(canvas_BNC, labels_BSN[rows, stage_B], stage_B, class_B)
        assert logits_BKV.shape[1] == 2 ** 4  # padded to the largest stage
        t_B, state_BND = torch.rand(3), torch.randn(3, 16, 4)
        s_B = torch.tensor([2, 0, 1])
        v_BND = model.forward_structure(canvas_BNC, state_BND, labels_BSN[rows, s_B], s_B, t_B, class_B)
        for b in range(3):
            s = int(stage_B[b])
            x0, logits = model.forward_content(canvas_BNC[[b]], labels_BSN[[b], s], s, class_B[[b]])
            torch.testing.assert_close(x0_BNC[[b]], x0, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(logits_BKV[[b], : 2**s], logits, atol=1e-5, rtol=1e-5)
            s = int(s_B[b])
            v = model.forward_structure(canvas_BNC[[b]], state_BND[[b]], labels_BSN[[b], s], s, t_B[[b]], class_B[[b]])
            torch.testing.assert_close(v_BND[[b]], v, atol=1e-5, rtol=1e-5)


def test_official_d16_keys_and_shapes():
    with torch.device("meta"):
        model = NVGTransformer.from_spec(TRANSFORMER_CONFIGS["official-d16"])
    official = json.loads(OFFICIAL_KEYS.read_text())["keys"]
    expected = {k.removeprefix("nvgformer."): tuple(shape) for k, shape in official.items()}
    expected = {k: shape for k, shape in expected.items() if not k.startswith(DROPPED_KEYS)}
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == expected


@pytest.mark.parametrize("name, content, structure, total", [
    ("official-d16", 255_183_904, 64_369_672, 319_553_576),
    ("official-d20", 496_602_912, 124_972_808, 621_575_720),
    ("official-d24", 856_271_392, 215_176_712, 1_071_448_104),
])
def test_official_parameter_counts(name, content, structure, total):
    with torch.device("meta"):
        model = NVGTransformer.from_spec(TRANSFORMER_CONFIGS[name])
    assert parameter_counts(model) == {"content": content, "structure": structure, "total": total}


def test_rope_axes():
    assert rope_axes(64, 8) == (8,) + (2,) * 8 + (20, 20)  # official
    assert sum(rope_axes(32, 4)) == 32 and rope_axes(32, 4)[1:5] == (2, 2, 2, 2)
    with pytest.raises(ValueError):
        rope_axes(16, 8)
    with pytest.raises(ValueError):
        TransformerConfig(hidden=64, heads=4)  # head dim 16 cannot hold 8 bit axes and a grid


def test_rope_bit_angles_shared_within_clusters():
    rope = StructureRoPE(head_dim=64, num_bits=8, grid_size=16)
    labels_N = build_tree(torch.randn(1, 256, 8))[0, 4]
    cos, sin = rope(rope.position_ids(bit_codes(labels_N[None], 4, 8), token_type=0))
    bit_pairs = slice(4, 4 + 8)  # 4 type pairs, then one pair per bit axis
    angles_NP = torch.atan2(sin, cos)[0, 0, :, bit_pairs]
    same_NN = labels_N[:, None] == labels_N[None, :]
    equal_NN = (angles_NP[:, None] == angles_NP[None, :]).all(-1)
    assert torch.equal(same_NN, equal_NN)


def test_rope_class_token_and_frequencies():
    rope = StructureRoPE(head_dim=64, num_bits=8, grid_size=16)
    cos, sin = rope(rope.class_ids(1, torch.device("cpu")))
    angles_P = torch.atan2(sin, cos)[0, 0, 0]
    expected = [1.0, 0.1, 0.01, 0.001] + [1.0] * 8 + [1e4 ** (-j / 10) for j in range(10)] * 2
    torch.testing.assert_close(angles_P, torch.tensor(expected))  # ids all ones: angle = frequency


def test_labels_reach_the_model_through_rope():
    model = tiny_model()
    cfg = model.spec
    labels_BSN, canvas_BNC = tiny_inputs()
    other_BSN, _ = tiny_inputs(seed=1)
    class_B = torch.tensor([0, 1])
    stage = 3
    assert not torch.equal(labels_BSN[:, stage], other_BSN[:, stage])
    with torch.no_grad():
        x0_a, _ = model.forward_content(canvas_BNC, labels_BSN[:, stage], stage, class_B)
        x0_b, _ = model.forward_content(canvas_BNC, other_BSN[:, stage], stage, class_B)
        # At stage 0 every map is the single cluster: the labels cannot matter.
        x0_c, _ = model.forward_content(canvas_BNC, labels_BSN[:, 0], 0, class_B)
        x0_d, _ = model.forward_content(canvas_BNC, other_BSN[:, 0], 0, class_B)
        state_BND = torch.randn(2, cfg.num_positions, cfg.num_bits)
        t_B = torch.full((2,), 0.5)
        v_a = model.forward_structure(canvas_BNC, state_BND, labels_BSN[:, 2], 2, t_B, class_B)
        v_b = model.forward_structure(canvas_BNC, state_BND, other_BSN[:, 2], 2, t_B, class_B)
    assert (x0_a - x0_b).abs().max() > 1e-4
    torch.testing.assert_close(x0_c, x0_d)
    assert (v_a - v_b).abs().max() > 1e-4


def test_positions_reach_the_model_through_rope():
    """Without RoPE the blocks are permutation-equivariant over positions; row/col RoPE breaks that."""
    model = tiny_model()
    labels_BSN, canvas_BNC = tiny_inputs()
    perm_N = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    class_B = torch.tensor([0, 1])
    with torch.no_grad():
        x0, _ = model.forward_content(canvas_BNC, labels_BSN[:, 2], 2, class_B)
        x0_perm, _ = model.forward_content(canvas_BNC[:, perm_N], labels_BSN[:, 2, perm_N], 2, class_B)
    assert (x0_perm - x0[:, perm_N]).abs().max() > 1e-4


def test_class_conditioning():
    model = tiny_model()
    cfg = model.spec
    labels_BSN, canvas_BNC = tiny_inputs(batch=1)
    canvas_2NC, labels_2N = canvas_BNC.repeat(2, 1, 1), labels_BSN[:, 2].repeat(2, 1)
    class_2 = torch.tensor([1, cfg.num_classes])  # a class and the null class
    with torch.no_grad():
        x0, logits = model.forward_content(canvas_2NC, labels_2N, 2, class_2)
        v = model.forward_structure(canvas_2NC, torch.randn(1, 16, 4).repeat(2, 1, 1), labels_2N, 1,
                                    torch.full((2,), 0.3), class_2)
    assert (x0[0] - x0[1]).abs().max() > 1e-4
    assert (logits[0] - logits[1]).abs().max() > 1e-4
    assert (v[0] - v[1]).abs().max() > 1e-4


def test_timestep_embedding_cos_first():
    emb = timestep_embedding(torch.tensor([0.0, 0.25]))
    assert emb.shape == (2, 64)
    torch.testing.assert_close(emb[0], torch.cat([torch.ones(32), torch.zeros(32)]))
    assert math.isclose(emb[1, 0].item(), math.cos(250.0), abs_tol=1e-4)


def test_config_validation():
    with pytest.raises(ValueError, match="scale_factors"):
        replace(TRANSFORMER_CONFIGS["tiny"], scale_factors=(1.0, 2.0))
    with pytest.raises(ValueError, match="structure_layout"):
        replace(TRANSFORMER_CONFIGS["tiny"], structure_layout="other")
    model = tiny_model()
    labels_BSN, canvas_BNC = tiny_inputs()
    with pytest.raises(ValueError, match="stages"):
        model.forward_structure(canvas_BNC, torch.zeros(2, 16, 4), labels_BSN[:, 3], 3, torch.rand(2),
                                torch.tensor([0, 1]))


def test_structure_class_proj_starts_as_a_no_op_and_then_carries_the_class():
    from nvg_core.train import with_config
    model = tiny_model("additive")
    boosted = with_config(model, use_structure_class_proj=True).eval()
    assert {n for n, _ in boosted.named_parameters()} - {n for n, _ in model.named_parameters()} == {
        "structure_class_proj.norm.scale", "structure_class_proj.linear.weight", "structure_class_proj.linear.bias"}
    labels_BSN, canvas_BNC = tiny_inputs(batch=2)
    args = (canvas_BNC, torch.randn(2, 16, 4), labels_BSN[:, 1], 1, torch.full((2,), 0.3), torch.tensor([1, 2]))
    with torch.no_grad():
        torch.testing.assert_close(boosted.forward_structure(*args), model.forward_structure(*args))
        boosted.structure_class_proj.linear.weight.normal_()
        assert (boosted.forward_structure(*args) - model.forward_structure(*args)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="does not keep the weights"):
        with_config(model, hidden=32, heads=1)
