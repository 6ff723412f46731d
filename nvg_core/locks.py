"""Locks: what a run keeps from a source (an NVGResult or a tokenized image), stage by stage.

    Locks.from_result(result, up_to_stage=3)                   # maps and codes of stages 0..3
    Locks.from_result(result, up_to_stage=3, content_up_to=-1) # maps only (a reference's structure)
    Locks.from_structure(projection.labels)                    # a sketch: maps of stages 0..k
    Locks.from_mask(result, mask_HW, from_stage=1)             # an inpainting: every cluster the mask touches
    Locks.from_clusters(result, stage=3, clusters=[5])         # resample one cluster (invert: all but it)
    Locks.from_donor(result, donor, stage=3, cluster=5)        # that cluster takes the donor's code there
    pipe.generate(classes, seeds=seeds, locks=locks)

One rule covers them all. The map of stage t + 1 is the source's at a position when t + 1 < len(labels_BSN)
and the position is not free at stage t (a free cluster is split anew); the code of a stage-s cluster is
the source's when s < len(ids) and the cluster is not free at s. free_BSN says which positions are free
at each stage; once free, always free, and what a stage frees is whole source clusters of that stage,
so every map stays a balanced tree and outside the free positions every stage's map and code is the
source's.

NVG's clusters group similar content, not neighbouring cells: a stage-3 cluster is scattered over the
whole image. So a mask frees, from `from_stage` on, every source cluster it touches (`cover` = 0: any
painted cell), which reaches cells outside it: an inpainting then keeps the source's pixels outside the
painted mask (NVGPipeline.regenerate blends by the mask). `cover` = 1.0 frees only the clusters that lie
wholly under the mask (coarse clusters rarely do, fine ones do, and at the last stage every painted cell
is free): nothing outside the mask changes in the codes either, and little changes inside it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, Sequence

import cv2
import numpy as np
import torch

from .structure import validate

MASK_COVER = 0.25  # a latent cell is under a painted mask when at least this share of its pixels is painted
INPAINT_STAGE = 1  # an inpainting's first resampled stage by default (app, CLI): bench/bench_edit.py --page


class Tokens(Protocol):
    """What a source provides: an NVGResult, or the tokenizer's encoding of images."""

    labels_BSN: torch.Tensor
    ids: Sequence[torch.Tensor]


@dataclass(frozen=True)
class Locks:
    """Source maps and codes, and the positions free at each stage (see the module docstring).

    labels_BSN: (B, L, N) source maps of stages 0..L-1. ids: source codes of stages 0..J-1 (J <= L), each
    (B, 2^s). free_BSN: (B, S, N) bool or None (nothing free: the prefix locks); it needs every stage's maps
    and codes. A lock of batch 1 applies to every image of a run.
    """

    labels_BSN: torch.Tensor
    ids: tuple[torch.Tensor, ...] = ()
    free_BSN: torch.Tensor | None = None

    def __post_init__(self) -> None:
        labels_BSN = torch.as_tensor(np.asarray(self.labels_BSN) if not isinstance(self.labels_BSN, torch.Tensor)
                                     else self.labels_BSN, dtype=torch.long)
        if labels_BSN.ndim == 2:
            labels_BSN = labels_BSN[None]
        if labels_BSN.ndim != 3 or labels_BSN.shape[1] == 0:
            raise ValueError(f"locked maps must be (B, stages, N), got {tuple(labels_BSN.shape)}")
        validate(labels_BSN)
        B, L, N = labels_BSN.shape
        ids = tuple(torch.as_tensor(i, dtype=torch.long) for i in self.ids)
        if len(ids) > L:
            raise ValueError("content can only be locked for stages whose structure is locked too")
        for s, ids_BK in enumerate(ids):
            if tuple(ids_BK.shape) != (B, 2**s):
                raise ValueError(f"locked codes of stage {s} must be ({B}, {2**s}), got {tuple(ids_BK.shape)}")
        object.__setattr__(self, "labels_BSN", labels_BSN)
        object.__setattr__(self, "ids", ids)
        if self.free_BSN is not None:
            free_BSN = torch.as_tensor(self.free_BSN, dtype=torch.bool)
            if tuple(free_BSN.shape) != (B, L, N) or len(ids) != L:
                raise ValueError(f"free positions must be (B, S, N) = {(B, L, N)}, with every stage's maps and codes")
            for s in range(L):
                earlier_BN = free_BSN[:, s - 1] if s else torch.zeros_like(free_BSN[:, 0])
                if (earlier_BN & ~free_BSN[:, s]).any():
                    raise ValueError(f"a position free at stage {s - 1} must stay free at stage {s}")
                added_BN = free_BSN[:, s] & ~earlier_BN
                if not torch.equal(added_BN, _whole_clusters(labels_BSN[:, s], added_BN) & ~earlier_BN):
                    raise ValueError(f"the positions freed at stage {s} must be whole clusters of that stage")
            object.__setattr__(self, "free_BSN", free_BSN)

    # ---------------------------------------------------------------------------------------------
    # Constructors
    # ---------------------------------------------------------------------------------------------

    @classmethod
    def from_result(cls, source: Tokens, up_to_stage: int, content_up_to: int | None = None) -> Locks:
        """Maps of stages 0..up_to_stage and codes of stages 0..content_up_to (default: the same; -1: none)."""
        content_up_to = up_to_stage if content_up_to is None else content_up_to
        if not 0 <= up_to_stage < source.labels_BSN.shape[1] or not -1 <= content_up_to <= up_to_stage:
            raise ValueError(f"locked stages must satisfy -1 <= content ({content_up_to}) <= structure ({up_to_stage}) "
                             f"< {source.labels_BSN.shape[1]}")
        return cls(source.labels_BSN[:, :up_to_stage + 1].cpu(), tuple(i.cpu() for i in source.ids[:content_up_to + 1]))

    @classmethod
    def from_structure(cls, labels: np.ndarray | torch.Tensor) -> Locks:
        """Maps only, (S', N) or (B, S', N): a sketch projection or extracted maps."""
        return cls(labels)

    @classmethod
    def from_clusters(cls, source: Tokens, stage: int, clusters: Sequence[int], invert: bool = False) -> Locks:
        """Everything of `source` except the given stage-`stage` clusters (invert: except all the others),
        which are resampled from that stage on."""
        labels_BSN = source.labels_BSN.cpu()
        if not 0 <= stage < labels_BSN.shape[1]:
            raise ValueError(f"the stage must be in [0, {labels_BSN.shape[1] - 1}], got {stage}")
        free_BN = torch.isin(labels_BSN[:, stage], torch.as_tensor(list(clusters), dtype=torch.long)) ^ invert
        free_BSN = free_BN[:, None].expand_as(labels_BSN) & (torch.arange(labels_BSN.shape[1]) >= stage)[:, None]
        return cls(labels_BSN, tuple(i.cpu() for i in source.ids), free_BSN)

    @classmethod
    def from_donor(cls, source: Tokens, donor: Tokens, stage: int, cluster: int, resample_after: bool = True) -> Locks:
        """Everything of `source` (one image), except that its stage-`stage` cluster takes the code of the
        donor image's stage-`stage` cluster covering most of the same cells: that region's content at this
        granularity comes from the other image. With resample_after its later stages are resampled (they
        were made for the old code); else they stay the source's."""
        labels_BSN, donor_BSN = source.labels_BSN.cpu(), donor.labels_BSN.cpu()
        B, S, N = labels_BSN.shape
        if B != 1 or donor_BSN.shape[0] != 1:
            raise ValueError("a code is copied between two single images: select them first (result.select(index))")
        if donor_BSN.shape[1:] != (S, N) or len(donor.ids) != S:
            raise ValueError("the donor must be a whole result of the same model")
        if not 0 <= stage < S or not 0 <= cluster < 2**stage:
            raise ValueError(f"stage {stage}, cluster {cluster} does not exist: stages 0..{S - 1}, clusters 0..2^stage-1")
        cells_N = labels_BSN[0, stage] == cluster
        donor_cluster = int(torch.bincount(donor_BSN[0, stage][cells_N], minlength=2**stage).argmax())
        ids = [i.cpu().clone() for i in source.ids]
        ids[stage][0, cluster] = donor.ids[stage][0, donor_cluster].cpu()
        free_BSN = None
        if resample_after and stage + 1 < S:
            free_BSN = cells_N[None, None].expand(B, S, N) & (torch.arange(S) > stage)[None, :, None]
        return cls(labels_BSN, tuple(ids), free_BSN)

    @classmethod
    def from_mask(cls, source: Tokens, mask_HW: np.ndarray, from_stage: int, cover: float = 0.0) -> Locks:
        """Resample under a painted mask (any size; nonzero = painted) from `from_stage` on, one image.

        At each stage from from_stage on, a source cluster is freed when at least `cover` of its cells are
        painted (mask_cells): cover 0 (the default) frees every cluster with a painted cell; cover = 1.0
        keeps every cell outside the mask exactly, codes included."""
        labels_BSN = source.labels_BSN.cpu()
        B, S, N = labels_BSN.shape
        if B != 1:
            raise ValueError("a mask applies to one image: select it first (result.select(index))")
        if not 0 <= from_stage < S:
            raise ValueError(f"from_stage must be in [0, {S - 1}], got {from_stage}")
        if not 0 <= cover <= 1:
            raise ValueError(f"cover must be in [0, 1], got {cover}")
        cells_N = torch.as_tensor(mask_cells(mask_HW, int(round(N**0.5))))
        if not cells_N.any():
            raise ValueError(f"the mask covers no latent cell: paint at least {MASK_COVER:.0%} of a cell "
                             f"(a cell is 1/{int(round(N**0.5))} of the image side)")
        free_BSN = torch.zeros(B, S, N, dtype=torch.bool)
        for s in range(from_stage, S):
            labels_N = labels_BSN[0, s]
            painted_K = torch.zeros(2**s).index_add_(0, labels_N, cells_N.float())
            freed_N = (painted_K >= max(cover * (N // 2**s) - 1e-6, 0.5))[labels_N]  # at least one painted cell
            free_BSN[0, s] = free_BSN[0, s - 1] | freed_N if s > from_stage else freed_N
        return cls(labels_BSN, tuple(i.cpu() for i in source.ids), free_BSN)

    # ---------------------------------------------------------------------------------------------
    # What the stage iterator asks
    # ---------------------------------------------------------------------------------------------

    def freed_per_stage(self) -> list[float]:
        """The share of positions free at each stage (all 0 for the prefix locks)."""
        if self.free_BSN is None:
            return [0.0] * self.labels_BSN.shape[1]
        return self.free_BSN.float().mean(dim=(0, 2)).tolist()

    def for_batch(self, batch: int, device: torch.device) -> Locks:
        """These locks for a run of `batch` images on `device` (a batch-1 lock is repeated)."""
        B = self.labels_BSN.shape[0]
        if B not in (1, batch):
            raise ValueError(f"locks for {B} images cannot apply to a batch of {batch}")

        def fit(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.expand(batch, *x.shape[1:]).to(device)

        return replace(self, labels_BSN=fit(self.labels_BSN), ids=tuple(fit(i) for i in self.ids), free_BSN=fit(self.free_BSN))

    def codes(self, stage: int, labels_BN: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(source codes (B, K), kept (B, K) bool) of a stage, or None when no code of it is kept."""
        if stage >= len(self.ids):
            return None
        ids_BK = self.ids[stage]
        if self.free_BSN is None:
            return ids_BK, torch.ones_like(ids_BK, dtype=torch.bool)
        free_BK = torch.zeros_like(ids_BK, dtype=torch.bool).scatter_(1, labels_BN, self.free_BSN[:, stage])
        return ids_BK, ~free_BK

    def next_map(self, stage: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(source map of stage + 1, kept (B, N) bool), or None when all of it is sampled."""
        if stage + 1 >= self.labels_BSN.shape[1]:
            return None
        labels_BN = self.labels_BSN[:, stage + 1]
        if self.free_BSN is None:
            return labels_BN, torch.ones_like(labels_BN, dtype=torch.bool)
        return labels_BN, ~self.free_BSN[:, stage]


def mask_cells(mask_HW: np.ndarray, grid: int) -> np.ndarray:
    """(grid*grid,) bool: the latent cells at least MASK_COVER painted, from a mask of any size."""
    mask_HW = np.asarray(mask_HW)
    if mask_HW.ndim == 3:
        mask_HW = mask_HW.max(axis=-1)
    if mask_HW.ndim != 2 or mask_HW.size == 0:
        raise ValueError(f"a mask must be a non-empty (H, W) array, got shape {mask_HW.shape}")
    painted_HW = (mask_HW > 0).astype(np.float32)
    cover_GG = cv2.resize(painted_HW, (grid, grid), interpolation=cv2.INTER_AREA)
    return (cover_GG >= MASK_COVER).ravel()


def _whole_clusters(labels_BN: torch.Tensor, free_BN: torch.Tensor) -> torch.Tensor:
    """free_BN grown to whole clusters of labels_BN (a cluster with any free position is free)."""
    free_BK = torch.zeros(labels_BN.shape[0], int(labels_BN.max()) + 1, dtype=torch.uint8).scatter_reduce(
        1, labels_BN.cpu(), free_BN.cpu().to(torch.uint8), reduce="amax")
    return free_BK.gather(1, labels_BN.cpu()).bool()
