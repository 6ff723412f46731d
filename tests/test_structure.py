import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nvg_core.structure import (agreement, agreement_ceiling, bit_codes, build_tree, draw_boundaries, num_stages, palette,
                                project, render_map, validate)


def slow_tree(points_NC: torch.Tensor) -> torch.Tensor:
    """A plain transcription of the documented rule: repeated global argmin, blanking, top-down labels."""
    N = points_NC.shape[0]
    clusters = [[p] for p in range(N)]
    rounds = []
    while len(clusters) > 1:
        reps = torch.stack([points_NC[c].mean(0) for c in clusters])
        M = len(clusters)
        dist = torch.cdist(reps[None], reps[None], p=2)[0] + torch.eye(M) * 1e8
        pairs = []
        for _ in range(M // 2):
            flat = int(dist.view(-1).argmin())
            i, j = divmod(flat, M)
            pairs.append((i, j))
            dist[[i, j], :] = 1e8
            dist[:, [i, j]] = 1e8
        rounds.append(pairs)
        clusters = [clusters[i] + clusters[j] for i, j in pairs]
    label = {0: 0}
    for pairs in reversed(rounds):
        label = {k: v for m, (i, j) in enumerate(pairs)
                 for k, v in ((min(i, j), 2 * label[m]), (max(i, j), 2 * label[m] + 1))}
    finest = torch.tensor([label[p] for p in range(N)])
    S = num_stages(N)
    return torch.stack([finest >> (S - 1 - s) for s in range(S)])


latents = st.builds(
    lambda seed, batch, log_n, channels: torch.randn(batch, 2**log_n, channels, generator=torch.Generator().manual_seed(seed)),
    seed=st.integers(0, 2**31), batch=st.integers(1, 3), log_n=st.integers(1, 8), channels=st.sampled_from([1, 2, 8, 32]))


@settings(max_examples=25, deadline=None)
@given(latents)
def test_build_tree_is_a_valid_balanced_refining_tree(latent):
    labels = build_tree(latent)
    B, N, _ = latent.shape
    assert labels.shape == (B, num_stages(N), N) and labels.dtype == torch.int64
    validate(labels)
    for i in range(num_stages(N)):
        assert labels[:, i].min() >= 0 and labels[:, i].max() < 2**i
    assert torch.equal(labels, build_tree(latent.clone()))


@settings(max_examples=20, deadline=None)
@given(latents)
def test_build_tree_equals_the_slow_reference_rule(latent):
    labels = build_tree(latent)
    for b in range(latent.shape[0]):
        assert torch.equal(labels[b], slow_tree(latent[b]))


def test_build_tree_on_full_grid_matches_reference_and_breaks_ties_by_index():
    g = torch.Generator().manual_seed(7)
    latent = torch.randn(2, 256, 32, generator=g)
    assert torch.equal(build_tree(latent)[1], slow_tree(latent[1]))
    # Identical vectors: every distance ties, so the smallest row-major index wins each time.
    ties = torch.zeros(1, 16, 4)
    assert torch.equal(build_tree(ties)[0], slow_tree(ties[0]))
    assert build_tree(ties)[0, -1].tolist() == list(range(16))


def test_build_tree_rejects_non_power_of_two_and_int_input():
    with pytest.raises(ValueError, match="power of two"):
        build_tree(torch.randn(1, 12, 4))
    with pytest.raises(ValueError, match="float tensor"):
        build_tree(torch.zeros(1, 16, 4, dtype=torch.long))


def test_bit_codes_give_decided_bits_msb_first_and_one_for_undecided():
    labels = torch.tensor([[5, 0, 7, 2]])  # stage 3: 101, 000, 111, 010
    codes = bit_codes(labels, stage=3, depth=5)
    assert codes[0].tolist() == [[2, 0, 2, 1, 1], [0, 0, 0, 1, 1], [2, 2, 2, 1, 1], [0, 2, 0, 1, 1]]
    assert (bit_codes(torch.zeros(1, 4, dtype=torch.long), 0, 8) == 1).all()


def test_bit_codes_are_shared_within_a_cluster():
    labels = build_tree(torch.randn(1, 64, 4))[0]
    for stage in range(7):
        codes = bit_codes(labels[stage][None], stage, 6)[0]
        for label in labels[stage].unique():
            assert (codes[labels[stage] == label] == codes[labels[stage] == label][0]).all()


def test_validate_rejects_out_of_range_unbalanced_and_non_refining_maps():
    good = build_tree(torch.randn(1, 16, 3))[0].numpy()
    validate(good)
    out_of_range = good.copy(); out_of_range[1, 0] = 2
    with pytest.raises(ValueError, match=r"stage 1 labels must lie in \[0, 2\)"):
        validate(out_of_range)
    unbalanced = good.copy(); unbalanced[2] = np.array([0] * 5 + [1] * 3 + [2] * 4 + [3] * 4)
    with pytest.raises(ValueError, match="must each cover 4 positions"):
        validate(unbalanced[:3])
    not_refining = good.copy(); not_refining[2] = (not_refining[2] + 2) % 4
    with pytest.raises(ValueError, match="does not refine"):
        validate(not_refining[:3])
    with pytest.raises(ValueError, match="integers"):
        validate(good.astype(float))
    with pytest.raises(ValueError, match="expected 256"):
        validate(good, num_positions=256)


def disc_map(size=64, radius=10):
    yy, xx = np.mgrid[:size, :size]
    return ((yy - 20) ** 2 + (xx - 40) ** 2 < radius**2).astype(np.int64)


@pytest.mark.parametrize("stage", [0, 1, 2, 4, 8])
def test_project_of_a_single_region_is_valid_and_fully_agrees(stage):
    result = project(np.full((37, 23), 3), stage)
    validate(result.labels)
    assert result.labels.shape == (stage + 1, 256) and result.agreement == 1.0


def test_project_keeps_two_halves_exactly():
    halves = np.repeat(np.array([[0] * 8 + [1] * 8]), 16, axis=0)
    result = project(halves, 1)
    assert result.agreement == 1.0
    assert (result.labels[1].reshape(16, 16) == halves).all() or (result.labels[1].reshape(16, 16) == 1 - halves).all()


def test_project_isolates_a_small_disc_once_clusters_are_small_enough():
    result = project(disc_map(), 4)  # the disc covers 16 of 256 cells: one stage-4 cluster
    validate(result.labels)
    assert result.agreement == 1.0
    disc_cells = result.regions.ravel() == 1
    assert len(np.unique(result.labels[4][disc_cells])) == 1
    # Before that the disc cannot own a cluster, but it stays inside a single one.
    assert len(np.unique(project(disc_map(), 2).labels[2][disc_cells])) == 1


def test_project_handles_many_regions_and_agreement_grows_with_stage():
    yy, xx = np.mgrid[:96, :96]
    regions = (yy // 32) * 3 + xx // 32  # 9 regions, unequal on the 16 grid
    scores = [project(regions, stage).agreement for stage in range(9)]
    for stage in range(9):
        validate(project(regions, stage).labels)
    assert scores == sorted(scores) and scores[-1] == 1.0 and scores[4] > 0.85
    assert 0 <= scores[1] < 0.5


def three_boxes():
    regions = np.zeros((16, 16), np.int64)
    regions[1:6, 1:7], regions[1:6, 9:15], regions[9:13, 1:14] = 1, 2, 3  # 30, 30 and 52 cells
    return regions


def test_agreement_ceiling_counts_what_equal_clusters_can_hold():
    # 142 background cells fill 2 of 4 clusters (14 left over); then the 52-cell box and one 30-cell box
    # can each be a cluster's majority: (128 + 52 + 30) / 256.
    assert agreement_ceiling(three_boxes(), 2) == 210 / 256
    assert agreement_ceiling(three_boxes(), 1) == (128 + 52) / 256
    assert agreement_ceiling(three_boxes(), 8) == 1.0
    assert agreement_ceiling(np.zeros(256), 3) == 1.0


@pytest.mark.parametrize("stage, expected", [(1, 180), (2, 210), (3, 240), (4, 252)])
def test_project_reaches_the_ceiling_on_three_boxes(stage, expected):
    """Halving by the closest-to-half subset alone gave 206, 234 and 250 at stages 2-4: the spare
    background cells went with the small boxes and the big box lost cells instead."""
    result = project(three_boxes(), stage)
    validate(result.labels)
    assert result.agreement == agreement_ceiling(three_boxes(), stage) == expected / 256


def test_project_splits_single_regions_into_compact_halves():
    labels = project(np.zeros((16, 16)), 2).labels
    for cluster in range(4):
        rows, cols = np.divmod(np.flatnonzero(labels[2] == cluster), 16)
        assert (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1) == 64  # a filled rectangle


def test_project_rejects_bad_input():
    with pytest.raises(ValueError, match="non-empty 2-D"):
        project(np.zeros((0, 5)), 1)
    with pytest.raises(ValueError, match="non-empty 2-D"):
        project(np.zeros((4, 4, 3)), 1)
    with pytest.raises(ValueError, match="stage must be in"):
        project(np.zeros((16, 16)), 9)


def test_agreement_is_purity():
    assert agreement(np.array([0, 0, 1, 1]), np.array([5, 5, 5, 6])) == 0.75


def test_palette_is_stable_distinct_and_children_resemble_parents():
    for stage in range(9):
        colours = palette(stage)
        assert colours.shape == (2**stage, 3) and len({tuple(c) for c in colours}) == 2**stage
    assert np.array_equal(palette(3), palette(3))
    parent, children, other = palette(2)[1].astype(int), palette(3)[[2, 3]].astype(int), palette(3)[6].astype(int)
    assert np.abs(children - parent).sum(1).max() < np.abs(other - parent).sum()


def test_render_map_and_boundaries_have_image_shapes():
    labels = build_tree(torch.randn(1, 256, 4))[0]
    image = render_map(labels[3], 3, size=100)
    assert image.shape == (100, 100, 3) and image.dtype == np.uint8
    base = np.zeros((64, 64, 3), np.uint8)
    over = draw_boundaries(base, labels[1], colour=(255, 0, 0))
    assert over.shape == base.shape and (over == [255, 0, 0]).all(-1).any() and not base.any()
    assert not draw_boundaries(base, labels[0]).any()  # one cluster: no boundary
    on_dark, on_light = draw_boundaries(base, labels[1]), draw_boundaries(base + 230, labels[1])
    assert on_dark.max() == 255 and on_light.min() == 32  # the default colour contrasts with the image
