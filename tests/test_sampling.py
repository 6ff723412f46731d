import numpy as np
import pytest
import torch

from nvg_core.locks import Locks
from nvg_core.sampling import (NVGResult, SamplingOptions, flow_times, generate, gumbel, iter_stages, linear_schedule,
                               official_options, sample_tokens, slow_then_fast_schedule, split_clusters)
from nvg_core.structure import build_tree, validate


@pytest.fixture(scope="module")
def models(tiny_pipeline):
    return tiny_pipeline.transformer, tiny_pipeline.tokenizer


def seeds(*values):
    return [torch.Generator().manual_seed(v) for v in values]


FAST = SamplingOptions(flow_steps=3)


def test_official_schedules():
    assert np.allclose(linear_schedule(1, 3.5, 9), [1, 1.3125, 1.625, 1.9375, 2.25, 2.5625, 2.875, 3.1875, 3.5])
    assert np.allclose(slow_then_fast_schedule(1, 0.5, 9),
                       [1.0, 0.9788, 0.9513, 0.9156, 0.8694, 0.8094, 0.7317, 0.6308, 0.5], atol=1e-4)
    assert np.allclose(flow_times(25)[:4], [1.0, 0.9754, 0.9499, 0.9236], atol=1e-4)
    assert flow_times(25)[-1] == 0.0


def test_options_reject_bad_values():
    with pytest.raises(ValueError, match="one value per stage"):
        SamplingOptions(top_p=[0.9, 0.8]).resolved(9)
    with pytest.raises(ValueError, match="top_p"):
        SamplingOptions(top_p=1.5).resolved(9)
    with pytest.raises(ValueError, match="flow_steps"):
        SamplingOptions(flow_steps=0).resolved(9)
    with pytest.raises(ValueError, match="temperature"):
        SamplingOptions(temperature=0).resolved(9)
    with pytest.raises(ValueError, match="split_rule"):
        SamplingOptions(split_rule="topk").resolved(9)
    assert SamplingOptions().split_rule == "official"


def test_the_authors_settings_written_out_are_the_defaults_of_sampling_options():
    authors = official_options(5)
    assert SamplingOptions().explicit(5) == authors
    assert authors.content_guidance == [1.0, 1.625, 2.25, 2.875, 3.5]
    assert authors.structure_guidance == [1.0, 1.375, 1.75, 2.125, 2.5]
    assert np.allclose(authors.top_p, [1.0, 0.93096, 0.83333, 0.69526, 0.5], atol=1e-5) and authors.top_p[-1] == 0.5
    assert authors.top_k == [0] * 5 and authors.temperature == [1.0] * 5
    assert (authors.flow_steps, authors.gumbel_split, authors.split_rule) == (25, False, "official")
    mine = SamplingOptions(content_guidance=2.0, top_k=3, flow_steps=4).explicit(5)
    assert mine.content_guidance == [2.0] * 5 and mine.top_k == [3] * 5 and mine.top_p == authors.top_p
    with pytest.raises(ValueError, match="one value per stage"):
        SamplingOptions(content_guidance=[1.0, 2.0]).explicit(5)


def test_with_last_stage_moves_each_schedule_along_its_official_shape():
    moved = official_options(5).with_last_stage(5, content_guidance=2.0, structure_guidance=4.5, top_p=0.3)
    assert np.allclose(moved.content_guidance, [1.0, 1.25, 1.5, 1.75, 2.0])
    assert np.allclose(moved.structure_guidance, [1.0, 1.875, 2.75, 3.625, 4.5])
    assert np.allclose(moved.top_p, slow_then_fast_schedule(1.0, 0.3, 5)) and moved.flow_steps == 25
    boosted = SamplingOptions(structure_guidance=[4.0, 4.0, 1.5, 2.0, 2.5], flow_steps=3)
    assert np.allclose(boosted.with_last_stage(5, structure_guidance=4.5).structure_guidance, [4.0, 4.5, 2.5, 3.5, 4.5])
    assert boosted.with_last_stage(5, structure_guidance=2.5) == boosted.explicit(5)  # at the last value: itself
    capped = SamplingOptions(top_p=[1.0, 1.0, 1.0, 1.0, 0.5]).with_last_stage(5, top_p=1.0)
    assert capped.top_p == [1.0] * 5


def test_sample_tokens_top_k_one_is_argmax_and_top_p_keeps_the_nucleus():
    logits = torch.log(torch.tensor([[[0.5, 0.3, 0.15, 0.05]]]))
    assert sample_tokens(logits, torch.rand(1, 1), 1.0, 1, 1.0).item() == 0
    picks = {sample_tokens(logits, torch.tensor([[u]]), 1.0, 0, 0.6).item() for u in np.linspace(0, 0.999, 50)}
    assert picks == {0, 1}  # 0.5 < 0.6 so the nucleus needs the second code, not the third
    picks = {sample_tokens(logits, torch.tensor([[u]]), 1.0, 3, 1.0).item() for u in np.linspace(0, 0.999, 50)}
    assert picks == {0, 1, 2}


def tied_scores(batch: int, positions: int, seed: int) -> torch.Tensor:
    """Scores like a trained flow's: most of them beyond +-1 (tied after the clamp), some inside."""
    g = torch.Generator().manual_seed(seed)
    values = torch.tensor([-3.0, -1.5, -1.0, -0.25, 0.5, 1.0, 1.2, 4.0])
    return values[torch.randint(0, len(values), (batch, positions), generator=g)]


def authors_split(labels_N: torch.Tensor, stage: int, scores_N: torch.Tensor, gumbel_N=None) -> torch.Tensor:
    """The authors' rule written out cluster by cluster: members in position order, clamp, +1, divide by the
    cluster's sum (log + Gumbel when given), torch.topk of half the cluster gets bit 1."""
    child_N = 2 * labels_N
    for cluster in range(2**stage):
        members = torch.nonzero(labels_N == cluster).flatten()
        probs = scores_N[members].clamp(-1, 1) + 1
        probs = probs / probs.sum()
        keys = probs if gumbel_N is None else torch.log(probs + 1e-8) + gumbel_N[members]
        child_N[members[keys.topk(len(members) // 2).indices]] += 1
    return child_N


def stable_split(labels_N: torch.Tensor, stage: int, scores_N: torch.Tensor) -> torch.Tensor:
    """The stable rule written out: per cluster, sort by clamped score, then raw score (both descending), then position."""
    child_N = 2 * labels_N
    for cluster in range(2**stage):
        members = torch.nonzero(labels_N == cluster).flatten().tolist()
        ranked = sorted(members, key=lambda n: (-min(max(scores_N[n].item(), -1), 1), -scores_N[n].item(), n))
        child_N[ranked[:len(members) // 2]] += 1
    return child_N


def test_the_default_split_is_the_authors_rule_at_every_stage_with_many_ties():
    tree = build_tree(torch.randn(3, 256, 4))
    for stage in range(8):
        scores = tied_scores(3, 256, stage)
        gumbel_noise = gumbel(torch.rand(3, 256, generator=torch.Generator().manual_seed(stage)))
        child = split_clusters(tree[:, stage], stage, scores)
        sampled = split_clusters(tree[:, stage], stage, scores, gumbel_noise)
        for b in range(3):
            assert torch.equal(child[b], authors_split(tree[b, stage], stage, scores[b]))
            assert torch.equal(sampled[b], authors_split(tree[b, stage], stage, scores[b], gumbel_noise[b]))
        validate(torch.cat([tree[:, :stage + 1], child[:, None]], dim=1))


def test_the_stable_split_breaks_ties_by_raw_score_then_position():
    tree = build_tree(torch.randn(2, 64, 3))
    for stage in range(6):
        scores = tied_scores(2, 64, 10 + stage)
        child = split_clusters(tree[:, stage], stage, scores, rule="stable")
        for b in range(2):
            assert torch.equal(child[b], stable_split(tree[b, stage], stage, scores[b]))
    labels = tree[:, 2]
    child = split_clusters(labels, 2, torch.ones(2, 64), rule="stable")  # all tied: the earliest positions win
    for b in range(2):
        for c in range(4):
            members = torch.nonzero(labels[b] == c).flatten()
            assert (child[b, members[:8]] == 2 * c + 1).all() and (child[b, members[8:]] == 2 * c).all()
    with pytest.raises(ValueError, match="split_rule"):
        split_clusters(labels, 2, torch.ones(2, 64), rule="random")


def test_the_last_split_follows_the_noise_without_gumbel(models):
    model, tokenizer = models
    S, N = model.spec.num_stages, model.spec.num_positions
    tree = build_tree(torch.randn(2, N, 3))
    noise = torch.randn(2, N, S - 1)
    maps = [generate(model, tokenizer, torch.tensor([0, 1]), seeds(3, 4), SamplingOptions(flow_steps=2, gumbel_split=g),
                     locks=Locks(tree[:, :S - 1]), structure_noise=noise).labels_BSN[:, -1] for g in (False, True)]
    expected = torch.stack([authors_split(tree[b, S - 2], S - 2, noise[b, :, S - 2]) for b in range(2)])
    assert torch.equal(maps[0], expected) and torch.equal(maps[1], expected)


def test_supplied_structure_noise_replaces_the_drawn_noise_and_nothing_else(models):
    model, tokenizer = models
    N, D = model.spec.num_positions, model.spec.num_bits
    seeded = generate(model, tokenizer, torch.tensor([0, 2]), seeds(5, 6), FAST)
    own_noise = torch.stack([torch.randn(N, D, generator=g) for g in seeds(5, 6)])  # the seeds' first draw
    again = generate(model, tokenizer, torch.tensor([0, 2]), seeds(5, 6), FAST, structure_noise=own_noise)
    assert torch.equal(again.labels_BSN, seeded.labels_BSN) and torch.equal(again.images, seeded.images)
    other = generate(model, tokenizer, torch.tensor([0, 2]), seeds(5, 6), FAST, structure_noise=-own_noise)
    assert not torch.equal(other.labels_BSN, seeded.labels_BSN)
    assert all(torch.equal(a, b) for a, b in zip(other.ids[:1], seeded.ids[:1]))  # stage 0 content precedes any split


def test_bad_structure_noise_is_refused(models):
    model, tokenizer = models
    N, D = model.spec.num_positions, model.spec.num_bits
    with pytest.raises(ValueError, match=r"structure_noise must have shape \(B, N, D\) = \(2, 16, 4\)"):
        generate(model, tokenizer, torch.tensor([0, 2]), None, FAST, structure_noise=torch.zeros(1, N, D))
    broken = torch.zeros(2, N, D)
    broken[1, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        generate(model, tokenizer, torch.tensor([0, 2]), None, FAST, structure_noise=broken)


def test_every_emitted_map_is_valid_and_stages_are_cumulative(models):
    model, tokenizer = models
    S = model.spec.num_stages
    stages = list(iter_stages(model, tokenizer, torch.tensor([0, 3]), seeds(1, 2), FAST, preview=True))
    assert [s.stage for s in stages] == list(range(S))
    validate(torch.stack([s.labels_BN for s in stages], dim=1))
    for s in stages:
        assert s.ids_BK.shape == (2, 2**s.stage) and s.images.shape[:2] == (2, 3)
    for a, b in zip(stages[:-1], stages[1:]):
        assert torch.equal(a.next_labels_BN, b.labels_BN)
    assert stages[-1].next_labels_BN is None


def test_one_seed_gives_one_image_whatever_the_batch(models):
    model, tokenizer = models
    alone = generate(model, tokenizer, torch.tensor([2]), seeds(5), FAST)
    again = generate(model, tokenizer, torch.tensor([2]), seeds(5), FAST)
    batched = generate(model, tokenizer, torch.tensor([1, 2]), seeds(9, 5), FAST)
    assert torch.equal(alone.labels_BSN, again.labels_BSN) and torch.equal(alone.images, again.images)
    assert torch.equal(alone.labels_BSN[0], batched.labels_BSN[1])
    assert all(torch.equal(a[0], b[1]) for a, b in zip(alone.ids, batched.ids))
    other = generate(model, tokenizer, torch.tensor([2]), seeds(6), FAST)
    assert not all(torch.equal(a, b) for a, b in zip(alone.ids, other.ids))


def test_supplied_maps_are_obeyed_exactly_and_invalid_maps_refused(models):
    model, tokenizer = models
    N = model.spec.num_positions
    tree = build_tree(torch.randn(2, N, 3))
    result = generate(model, tokenizer, torch.tensor([0, 1]), seeds(3, 4), FAST, locks=Locks.from_structure(tree[:, :3]))
    assert torch.equal(result.labels_BSN[:, :3], tree[:, :3])
    validate(result.labels_BSN)
    broken = tree[:, :3].clone()
    broken[0, 2, 0] = 3 - broken[0, 2, 0]
    with pytest.raises(ValueError, match="must each cover 4 positions"):
        Locks.from_structure(broken)
    with pytest.raises(ValueError, match="locks for 2 images cannot apply to a batch of 3"):
        generate(model, tokenizer, torch.tensor([0, 1, 1]), seeds(3, 4, 5), FAST, locks=Locks.from_structure(tree[:, :3]))
    one = generate(model, tokenizer, torch.tensor([0, 1]), seeds(3, 4), FAST, locks=Locks.from_structure(tree[:1, :3]))
    assert torch.equal(one.labels_BSN[:, :3], tree[:1, :3].expand(2, -1, -1))  # a batch-1 lock applies to every image


def test_locked_stages_are_identical_across_seeds(models):
    model, tokenizer = models
    first = generate(model, tokenizer, torch.tensor([1]), seeds(0), FAST)
    k = 2
    for seed in (10, 11, 12):
        again = generate(model, tokenizer, torch.tensor([1]), seeds(seed), FAST, locks=Locks.from_result(first, k))
        assert torch.equal(again.labels_BSN[:, :k + 1], first.labels_BSN[:, :k + 1])
        assert all(torch.equal(a, b) for a, b in zip(again.ids[:k + 1], first.ids[:k + 1]))
    with pytest.raises(ValueError, match="content can only be locked"):
        Locks(first.labels_BSN[:, :1], first.ids[:2])


def test_same_seed_with_its_own_locked_stages_reproduces_the_image(models):
    model, tokenizer = models
    first = generate(model, tokenizer, torch.tensor([1]), seeds(4), FAST)
    again = generate(model, tokenizer, torch.tensor([1]), seeds(4), FAST, locks=Locks.from_result(first, 2))
    assert torch.equal(first.labels_BSN, again.labels_BSN) and torch.equal(first.images, again.images)


def test_class_swap_from_stage_k_leaves_earlier_stages_untouched(models):
    model, tokenizer = models
    S = model.spec.num_stages
    k = 3
    plain = generate(model, tokenizer, torch.tensor([0]), seeds(8), FAST)
    swapped_classes = torch.tensor([[0] * k + [3] * (S - k)])
    swapped = generate(model, tokenizer, swapped_classes, seeds(8), FAST)
    # Stages < k are the same: their content and the maps they decide (up to stage k's map).
    assert torch.equal(plain.labels_BSN[:, :k + 1], swapped.labels_BSN[:, :k + 1])
    assert all(torch.equal(a, b) for a, b in zip(plain.ids[:k], swapped.ids[:k]))
    assert not all(torch.equal(a, b) for a, b in zip(plain.ids[k:], swapped.ids[k:]))
    assert swapped.class_labels_BS[0].tolist() == swapped_classes[0].tolist()


def test_guidance_and_gumbel_runs_produce_valid_results(models):
    model, tokenizer = models
    options = SamplingOptions(flow_steps=2, content_guidance=2.0, structure_guidance=1.5, gumbel_split=True, top_k=3)
    result = generate(model, tokenizer, torch.tensor([0, 2]), seeds(1, 2), options)
    validate(result.labels_BSN)
    assert isinstance(result, NVGResult) and torch.isfinite(result.images).all()


def test_bad_class_ids_are_refused(models):
    model, tokenizer = models
    with pytest.raises(ValueError, match="class ids must be in"):
        generate(model, tokenizer, torch.tensor([model.spec.num_classes]), None, FAST)


def test_low_temperature_concentrates_on_the_most_likely_code():
    logits = torch.log(torch.tensor([[[0.4, 0.35, 0.25]]]))
    uniforms = [torch.tensor([[u]]) for u in np.linspace(0, 0.99, 40)]
    cold = {sample_tokens(logits, u, 0.02, 0, 1.0).item() for u in uniforms}
    warm = {sample_tokens(logits, u, 1.0, 0, 1.0).item() for u in uniforms}
    assert cold == {0} and warm == {0, 1, 2}


def test_more_flow_steps_refine_the_time_grid():
    assert len(flow_times(4)) == 5 and len(flow_times(25)) == 26
    assert all(a > b for a, b in zip(flow_times(10)[:-1], flow_times(10)[1:]))
