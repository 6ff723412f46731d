"""Locks: prefix locks, masks and clusters; outside what is freed, every stage stays the source's exactly."""

import numpy as np
import pytest
import torch

from nvg_core.locks import Locks, mask_cells
from nvg_core.structure import validate


@pytest.fixture(scope="module")
def source(tiny_pipeline):
    return tiny_pipeline.generate(["apple"], seeds=[3])


def corner_mask(size=16):
    """The top-left latent cell of the tiny model's 4 x 4 grid, painted."""
    mask = np.zeros((size, size), np.uint8)
    mask[: size // 4, : size // 4] = 255
    return mask


def test_mask_cells_are_the_cells_painted_at_least_a_quarter():
    mask = np.zeros((64, 64))
    mask[:16, :3] = 1  # 3/16 of each of the first column's cells: too little
    assert not mask_cells(mask, 4).any()
    mask[:16, :4] = 1  # a quarter of cell 0
    assert mask_cells(mask, 4).tolist() == [True] + [False] * 15
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[4:, 4:, 2] = 9  # any painted channel counts
    assert np.flatnonzero(mask_cells(rgb, 2)).tolist() == [3]


@pytest.mark.parametrize("from_stage", [1, 2, 3])
def test_masked_regeneration_keeps_every_stage_outside_the_freed_clusters(tiny_pipeline, source, from_stage):
    locks = Locks.from_mask(source, corner_mask(), from_stage)
    free_N = locks.free_BN[0]
    assert free_N[mask_cells(corner_mask(), 4)].all() and free_N.sum() == 16 // 2**from_stage  # one cluster
    out = tiny_pipeline.regenerate(source, from_stage=from_stage, mask=corner_mask(), num_variations=4,
                                   seeds=[10, 11, 12, 13])
    validate(out.labels_BSN)
    codes_BSN, source_SN = out.codes_BSN, source.codes_BSN[0]
    assert torch.equal(codes_BSN[:, :, ~free_N], source_SN[None, :, ~free_N].expand(4, -1, -1))
    assert torch.equal(out.labels_BSN[:, :, ~free_N], source.labels_BSN[:, :, ~free_N].expand(4, -1, -1))
    assert torch.equal(out.labels_BSN[:, : from_stage + 1], source.labels_BSN[:, : from_stage + 1].expand(4, -1, -1))
    assert torch.equal(codes_BSN[:, :from_stage], source_SN[None, :from_stage].expand(4, -1, -1))
    assert not torch.equal(codes_BSN[:, from_stage:, free_N], source_SN[None, from_stage:, free_N].expand(4, -1, -1))


def test_masked_regeneration_with_a_class_uses_it_from_the_stage_on(tiny_pipeline, source):
    out = tiny_pipeline.regenerate(source, from_stage=2, mask=corner_mask(), class_labels="dog", seeds=[1])
    assert out.class_labels_BS[0].tolist() == [0, 0, 3, 3, 3]


def test_masked_regeneration_is_pinned(tiny_pipeline, source):
    """A fixed source, mask and seed give these maps and codes (tiny random model)."""
    out = tiny_pipeline.regenerate(source, from_stage=2, mask=corner_mask(), seeds=[7])
    assert out.labels_BSN[0, 4].tolist() == PINNED_LABELS_STAGE4
    assert out.ids[3][0].tolist() == PINNED_IDS_STAGE3


PINNED_LABELS_STAGE4 = [12, 8, 0, 15, 14, 13, 4, 6, 1, 9, 7, 2, 5, 10, 11, 3]  # source: [13, 8, 0, 15, 12, 14, ...]
PINNED_IDS_STAGE3 = [12, 4, 13, 11, 10, 13, 5, 10]  # source: [..., 5, 9]: cluster 7 under the mask


def test_a_cluster_alone_or_all_but_it_is_resampled(tiny_pipeline, source):
    stage, cluster = 2, 1
    in_cluster_N = source.labels_BSN[0, stage] == cluster
    alone = tiny_pipeline.regenerate(source, from_stage=stage, locks=Locks.from_clusters(source, stage, [cluster]), seeds=[4])
    assert torch.equal(alone.codes_BSN[0][:, ~in_cluster_N], source.codes_BSN[0][:, ~in_cluster_N])
    others = tiny_pipeline.regenerate(source, from_stage=stage, seeds=[4],
                                      locks=Locks.from_clusters(source, stage, [cluster], invert=True))
    assert torch.equal(others.codes_BSN[0][:, in_cluster_N], source.codes_BSN[0][:, in_cluster_N])
    assert not torch.equal(others.codes_BSN[0][:, ~in_cluster_N], source.codes_BSN[0][:, ~in_cluster_N])


def test_locks_with_everything_kept_reproduce_the_source(tiny_pipeline, source):
    again = tiny_pipeline.generate(["cat"], seeds=[99], locks=Locks.from_result(source, tiny_pipeline.num_stages - 1))
    assert torch.equal(again.labels_BSN, source.labels_BSN) and torch.equal(again.images, source.images)


def test_bad_locks_get_clear_errors(source):
    with pytest.raises(ValueError, match="whole clusters of stage 2"):
        Locks(source.labels_BSN, source.ids, torch.arange(16)[None] == 0, free_from=2)
    with pytest.raises(ValueError, match="covers no latent cell"):
        Locks.from_mask(source, np.zeros((16, 16)), 2)
    with pytest.raises(ValueError, match="one image"):
        Locks.from_mask(source.select([0, 0]), corner_mask(), 2)
    with pytest.raises(ValueError, match="content .* <= structure"):
        Locks.from_result(source, 1, content_up_to=2)
    with pytest.raises(ValueError, match=r"must be \(B, stages, N\)"):
        Locks(np.zeros((2, 2, 2, 2), int))
