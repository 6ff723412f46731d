"""NVG training objective: it trains, its parts are sane, stage sampling is unbiased, dropout rate."""

import pytest
import torch

from nvg_core.objective import canvas_scale_factors, drop_classes, nvg_loss
from nvg_core.structure import build_tree
from nvg_core.transformer import TRANSFORMER_CONFIGS, NVGTransformer

CFG = TRANSFORMER_CONFIGS["tiny"]


def random_batch(batch: int = 8, seed: int = 0):
    """Tokenizer-like teacher-forcing tensors: a tree from a random latent, one random code per cluster,
    canvases that add each stage's (shrinking) code vectors."""
    g = torch.Generator().manual_seed(seed)
    N, C, V, S = CFG.num_positions, CFG.latent_channels, CFG.codebook_size, CFG.num_stages
    labels_BSN = build_tree(torch.randn(batch, N, C, generator=g))
    codebook_VC = torch.randn(V, C, generator=g)
    codes_BSN = torch.stack([torch.randint(V, (batch, 2**i), generator=g).gather(1, labels_BSN[:, i])
                             for i in range(S)], dim=1)
    terms_BSNC = codebook_VC[codes_BSN] / torch.arange(1, S + 1)[None, :, None, None]
    canvases_BSNC = torch.cat([torch.zeros(batch, 1, N, C), terms_BSNC.cumsum(1)[:, :-1]], dim=1)
    class_B = torch.randint(CFG.num_classes, (batch,), generator=g)
    return canvases_BSNC, terms_BSNC.sum(1), labels_BSN, codes_BSN, class_B


def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = NVGTransformer.from_spec(CFG)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = random_batch()
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(30):
        loss, parts = nvg_loss(model, *batch, generator=g, stages_per_sample=2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        assert all(torch.isfinite(v) for v in parts.values())
    assert sum(losses[-5:]) / 5 < 0.75 * sum(losses[:5]) / 5


def test_parts_add_up_and_are_reproducible():
    torch.manual_seed(0)
    model = NVGTransformer.from_spec(CFG)
    batch = random_batch(batch=4)
    loss_a, parts = nvg_loss(model, *batch, generator=torch.Generator().manual_seed(3))
    loss_b, _ = nvg_loss(model, *batch, generator=torch.Generator().manual_seed(3))
    assert set(parts) == {"loss", "x0_mse", "code_ce", "code_acc", "structure_mse", "split_mse"}
    assert torch.equal(loss_a, loss_b)
    torch.testing.assert_close(parts["loss"], parts["x0_mse"] + parts["code_ce"] + parts["structure_mse"])
    # Untrained: the code CE is near log(V) (xavier logits are small but not zero).
    assert abs(parts["code_ce"].item() - torch.log(torch.tensor(float(CFG.codebook_size))).item()) < 1.5
    assert 0 <= parts["code_acc"].item() <= 1


def test_stage_sampling_is_unbiased():
    """With one stage per image, the content terms over the S possible draws average to the full loss."""
    torch.manual_seed(0)
    model = NVGTransformer.from_spec(CFG).eval()
    batch = random_batch(batch=1)

    def content(parts):
        return (parts["x0_mse"] + parts["code_ce"]).item()

    with torch.no_grad():
        full = content(nvg_loss(model, *batch, cfg_drop=0.0)[1])
        seen = {round(content(nvg_loss(model, *batch, generator=torch.Generator().manual_seed(s),
                                        stages_per_sample=1, cfg_drop=0.0)[1]), 5) for s in range(60)}
    assert len(seen) == CFG.num_stages
    assert abs(sum(seen) / len(seen) - full) < 1e-4


def test_class_dropout_rate():
    labels_B = torch.zeros(20_000, dtype=torch.long)
    dropped_B = drop_classes(labels_B, CFG.num_classes, 0.1, torch.Generator().manual_seed(0))
    assert set(dropped_B.unique().tolist()) == {0, CFG.num_classes}
    assert 0.09 < (dropped_B == CFG.num_classes).float().mean().item() < 0.11
    again_B = drop_classes(labels_B, CFG.num_classes, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(dropped_B, again_B)


def test_canvas_scale_factors():
    canvases_BSNC, final_BNC, *_ = random_batch()
    factors = canvas_scale_factors(canvases_BSNC, final_BNC)
    assert len(factors) == CFG.num_stages + 1 and factors[0] == 1.0
    assert abs(factors[-1] * final_BNC.std().item() - 1) < 1e-6


def test_structure_only_loss_skips_the_content_branch_and_follows_the_stage_weights():
    torch.manual_seed(0)
    model = NVGTransformer.from_spec(CFG)
    batch = random_batch(batch=4)
    weights = [1.0] + [0.0] * (CFG.num_structure_stages - 1)  # only the first split
    loss, parts = nvg_loss(model, *batch, generator=torch.Generator().manual_seed(3), content=False,
                           structure_stage_weights=weights, stages_per_sample=2)
    assert set(parts) == {"loss", "structure_mse", "split_mse"}
    loss.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("structure_"))
    assert model.structure_stage_embed.weight.grad[0].abs().sum() > 0
    assert model.structure_stage_embed.weight.grad[1:].abs().sum() == 0  # no other stage was drawn


def test_split_weight_adds_the_deciding_bit_loss():
    torch.manual_seed(0)
    model = NVGTransformer.from_spec(CFG)
    batch = random_batch(batch=4)
    _, plain = nvg_loss(model, *batch, generator=torch.Generator().manual_seed(3))
    loss, parts = nvg_loss(model, *batch, generator=torch.Generator().manual_seed(3), split_weight=2.0)
    torch.testing.assert_close(loss, plain["loss"] + 2.0 * plain["split_mse"])
    with pytest.raises(ValueError, match="stage weights"):
        nvg_loss(model, *batch, structure_stage_weights=[1.0, 2.0])


def test_shards_of_a_global_batch_draw_what_the_whole_batch_draws():
    """Two processes' shards (random numbers drawn for the global batch) average to the one-process loss."""
    torch.manual_seed(0)
    model = NVGTransformer.from_spec(CFG).eval()
    batch = random_batch(batch=6)
    with torch.no_grad():
        whole, _ = nvg_loss(model, *batch, generator=torch.Generator().manual_seed(5), stages_per_sample=2)
        halves = [nvg_loss(model, *(t[3 * i:3 * (i + 1)] for t in batch), generator=torch.Generator().manual_seed(5),
                           stages_per_sample=2, shard=(i, 2))[0] for i in range(2)]
        unsharded = nvg_loss(model, *(t[:3] for t in batch), generator=torch.Generator().manual_seed(5), stages_per_sample=2)[0]
    assert (halves[0] + halves[1]).item() / 2 == pytest.approx(whole.item(), rel=1e-5)
    assert halves[0].item() != pytest.approx(unsharded.item(), rel=1e-3)  # the shard did not draw as a batch of 3
