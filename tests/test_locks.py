"""Locks: prefix locks, masks and clusters; outside what is freed, every stage stays the source's exactly."""

import cv2
import numpy as np
import pytest
import torch

from nvg_core.images import to_uint8
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


def left_half_mask(size=16):
    mask = np.zeros((size, size), np.uint8)
    mask[:, : size // 2] = 255
    return mask


@pytest.mark.parametrize("from_stage", [1, 2, 3])
def test_the_exact_cluster_edit_keeps_every_stage_outside_the_mask(tiny_pipeline, source, from_stage):
    painted_N = torch.as_tensor(mask_cells(left_half_mask(), 4))
    locks = Locks.from_mask(source, left_half_mask(), from_stage, cover=1.0)
    free_SN = locks.free_BSN[0]
    assert not free_SN[:from_stage].any() and not free_SN[:, ~painted_N].any()
    assert torch.equal(free_SN[-1], painted_N)  # at the last stage every cluster is one cell
    out = tiny_pipeline.regenerate(source, from_stage=from_stage, mask=left_half_mask(), num_variations=4,
                                   seeds=[10, 11, 12, 13], cover=1.0)
    validate(out.labels_BSN)
    codes_BSN, source_SN = out.codes_BSN, source.codes_BSN[0]
    assert torch.equal(codes_BSN[:, :, ~painted_N], source_SN[None, :, ~painted_N].expand(4, -1, -1))
    assert torch.equal(out.labels_BSN[:, :, ~painted_N], source.labels_BSN[:, :, ~painted_N].expand(4, -1, -1))
    assert torch.equal(codes_BSN[:, :from_stage], source_SN[None, :from_stage].expand(4, -1, -1))
    assert not torch.equal(codes_BSN[:, :, painted_N], source_SN[None, :, painted_N].expand(4, -1, -1))


def test_a_lower_cover_frees_clusters_mostly_under_the_mask_and_cover_0_every_cluster_it_touches(source):
    exact, loose, touched = (Locks.from_mask(source, left_half_mask(), 1, cover=c).freed_per_stage() for c in (1.0, 0.5, 0.0))
    assert exact == [0.0, 0.0, 0.0, 0.25, 0.5]  # pinned: the tiny source's clusters under the left half
    assert all(b >= a for a, b in zip(exact, loose)) and loose[1] > 0
    assert all(c >= b for b, c in zip(loose, touched)) and touched == Locks.from_mask(source, left_half_mask(), 1).freed_per_stage()
    painted_N = torch.as_tensor(mask_cells(corner_mask(), 4))  # one cell: its stage-2 cluster is freed from stage 2 on
    free_SN = Locks.from_mask(source, corner_mask(), 2).free_BSN[0]
    cluster_N = source.labels_BSN[0, 2] == source.labels_BSN[0, 2][painted_N]
    assert not free_SN[:2].any() and all(torch.equal(free_SN[s], cluster_N) for s in range(2, 5))


@pytest.mark.parametrize("from_stage", [0, 1, 2, 3, 4])
def test_an_inpainting_keeps_the_pixels_outside_the_painted_mask_at_every_stage(tiny_pipeline, source, from_stage):
    mask = np.zeros((16, 16), np.uint8)
    mask[2:9, 3:12] = 255  # not aligned with the 4 px cells
    out = tiny_pipeline.regenerate(source, from_stage=from_stage, mask=mask, num_variations=3, seeds=[5, 6, 7])
    beyond_HW = cv2.distanceTransform((mask == 0).astype(np.uint8), cv2.DIST_L2, 3) > 1  # the 16 px model's feather: 1 px
    before, after = to_uint8(source.images)[0], to_uint8(out.images)
    assert (after[:, beyond_HW] == before[beyond_HW]).all()
    assert (after[:, mask > 0] != before[mask > 0]).any()


def test_masked_regeneration_with_a_class_uses_it_from_the_stage_on(tiny_pipeline, source):
    out = tiny_pipeline.regenerate(source, from_stage=2, mask=corner_mask(), class_labels="dog", seeds=[1])
    assert out.class_labels_BS[0].tolist() == [0, 0, 3, 3, 3]


def test_masked_regeneration_is_pinned(tiny_pipeline, source):
    """A fixed source, mask and seed give these maps and codes (tiny random model), the exact-cluster edit
    and the inpainting (the default)."""
    out = tiny_pipeline.regenerate(source, from_stage=1, mask=left_half_mask(), seeds=[7], cover=1.0)
    assert out.labels_BSN[0, 4].tolist() == PINNED_LABELS_STAGE4
    assert out.ids[4][0].tolist() == PINNED_IDS_STAGE4
    out = tiny_pipeline.regenerate(source, from_stage=1, mask=left_half_mask(), seeds=[7])
    assert out.labels_BSN[0, 4].tolist() == PINNED_INPAINT_LABELS_STAGE4
    assert out.ids[4][0].tolist() == PINNED_INPAINT_IDS_STAGE4


# The source's were [13, 8, 0, 15, 12, 14, 4, ...] and [9, 8, 8, 8, 9, 10, 8, 13, 8, 8, 4, 4, 13, 8, 9, 13]:
# the split of stage-3 cluster 6 (positions 0 and 4, both painted) was redrawn, and so were the codes of
# the painted cells' clusters.
PINNED_LABELS_STAGE4 = [12, 8, 0, 15, 13, 14, 4, 6, 1, 9, 7, 2, 5, 10, 11, 3]
PINNED_IDS_STAGE4 = [9, 9, 8, 8, 9, 9, 8, 13, 13, 4, 13, 4, 8, 13, 4, 13]
PINNED_INPAINT_LABELS_STAGE4 = [12, 9, 0, 15, 14, 13, 1, 5, 7, 10, 4, 3, 2, 11, 8, 6]
PINNED_INPAINT_IDS_STAGE4 = [8, 1, 8, 4, 8, 9, 9, 13, 2, 8, 13, 8, 9, 1, 4, 8]


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
    one_cell_BSN = (torch.arange(16) == 0).expand(1, 5, 16) & (torch.arange(5) >= 2)[:, None]
    with pytest.raises(ValueError, match="freed at stage 2 must be whole clusters"):
        Locks(source.labels_BSN, source.ids, one_cell_BSN)
    with pytest.raises(ValueError, match="must stay free"):
        Locks(source.labels_BSN, source.ids, torch.ones(1, 5, 16, dtype=torch.bool) & (torch.arange(5) < 2)[:, None])
    for cover in (-0.1, 1.5):
        with pytest.raises(ValueError, match="cover must be"):
            Locks.from_mask(source, corner_mask(), 2, cover=cover)
    with pytest.raises(ValueError, match="covers no latent cell"):
        Locks.from_mask(source, np.zeros((16, 16)), 2)
    with pytest.raises(ValueError, match="one image"):
        Locks.from_mask(source.select([0, 0]), corner_mask(), 2)
    with pytest.raises(ValueError, match="content .* <= structure"):
        Locks.from_result(source, 1, content_up_to=2)
    with pytest.raises(ValueError, match=r"must be \(B, stages, N\)"):
        Locks(np.zeros((2, 2, 2, 2), int))


@pytest.mark.parametrize("resample_after", [True, False])
def test_a_cluster_takes_the_donors_code_and_everything_else_stays(tiny_pipeline, source, resample_after):
    donor = tiny_pipeline.generate(["apple"], seeds=[4])
    cells_N = source.labels_BSN[0, 2] == 3
    donor_cluster = int(torch.bincount(donor.labels_BSN[0, 2][cells_N], minlength=4).argmax())
    assert int(source.ids[2][0, 3]) != int(donor.ids[2][0, donor_cluster])  # the copy changes something
    locks = Locks.from_donor(source, donor, stage=2, cluster=3, resample_after=resample_after)
    out = tiny_pipeline.generate(["apple"], seeds=[9], locks=locks)
    assert int(out.ids[2][0, 3]) == int(donor.ids[2][0, donor_cluster])
    expected_SN = source.codes_BSN[0].clone()
    expected_SN[2, cells_N] = int(donor.ids[2][0, donor_cluster])
    kept_SN = torch.ones_like(expected_SN, dtype=torch.bool)
    if resample_after:
        kept_SN[3:, cells_N] = False  # the cluster's later stages are resampled, nothing else
    assert torch.equal(out.codes_BSN[0][kept_SN], expected_SN[kept_SN])
    assert torch.equal(out.labels_BSN[0][:, ~cells_N], source.labels_BSN[0][:, ~cells_N])
    with pytest.raises(ValueError, match="does not exist"):
        Locks.from_donor(source, donor, stage=2, cluster=4)
