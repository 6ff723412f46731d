"""Locks: what a run keeps from a source (an NVGResult or a tokenized image), stage by stage.

    Locks.from_result(result, up_to_stage=3)                   # maps and codes of stages 0..3
    Locks.from_result(result, up_to_stage=3, content_up_to=-1) # maps only (a reference's structure)
    Locks.from_structure(projection.labels)                    # a sketch: maps of stages 0..k
    Locks.from_mask(result, mask_HW, from_stage=4)             # resample only the clusters under a mask
    Locks.from_clusters(result, stage=3, clusters=[5])         # resample one cluster (invert: all but it)
    pipe.generate(classes, seeds=seeds, locks=locks)

One rule covers them all. The map of stage t is the source's at a position when t < len(labels_BSN) and
the position is not free at t; the code of a stage-s cluster is the source's when s < len(ids) and the
cluster is not free at s. Free means: in `free_BN` and at or after `free_from` (for a map, after it: the
map of stage free_from itself is kept, its free clusters split anew). free_BN is a union of stage-
free_from clusters, and a cluster's descendants cover exactly its positions, so outside free_BN every
stage's map and code is the source's, and the maps stay balanced trees (each cluster is split whole,
either as the source split it or as the sampler does).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, Sequence

import cv2
import numpy as np
import torch

from .structure import validate

MASK_COVER = 0.25  # a latent cell is under a painted mask when at least this share of its pixels is painted


class Tokens(Protocol):
    """What a source provides: an NVGResult, or the tokenizer's encoding of images."""

    labels_BSN: torch.Tensor
    ids: Sequence[torch.Tensor]


@dataclass(frozen=True)
class Locks:
    """Source maps and codes, and which positions are free from which stage (see the module docstring).

    labels_BSN: (B, L, N) source maps of stages 0..L-1. ids: source codes of stages 0..J-1 (J <= L), each
    (B, 2^s). free_BN: (B, N) bool or None (nothing free: the prefix locks). free_from: the stage whose
    clusters free_BN is made of. A lock of batch 1 applies to every image of a run.
    """

    labels_BSN: torch.Tensor
    ids: tuple[torch.Tensor, ...] = ()
    free_BN: torch.Tensor | None = None
    free_from: int = 0

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
        if self.free_BN is not None:
            free_BN = torch.as_tensor(self.free_BN, dtype=torch.bool)
            if tuple(free_BN.shape) != (B, N):
                raise ValueError(f"free positions must be ({B}, {N}), got {tuple(free_BN.shape)}")
            if not 0 <= self.free_from < L or len(ids) != L:
                raise ValueError("free positions need every stage's maps and codes and a free_from stage among them")
            if not torch.equal(free_BN, _whole_clusters(labels_BSN[:, self.free_from], free_BN)):
                raise ValueError(f"free positions must be whole clusters of stage {self.free_from}")
            object.__setattr__(self, "free_BN", free_BN)

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
        labels_BN = source.labels_BSN[:, stage].cpu()
        free_BN = torch.isin(labels_BN, torch.as_tensor(list(clusters), dtype=torch.long))
        return cls(source.labels_BSN.cpu(), tuple(i.cpu() for i in source.ids), free_BN ^ invert, stage)

    @classmethod
    def from_mask(cls, source: Tokens, mask_HW: np.ndarray, from_stage: int) -> Locks:
        """Resample the stage-`from_stage` clusters under a painted mask (any size; nonzero = painted) and
        keep everything else. The later the stage, the smaller its clusters and the closer the freed area
        follows the mask; `free_share` says how much was freed. One source image."""
        N = source.labels_BSN.shape[-1]
        if source.labels_BSN.shape[0] != 1:
            raise ValueError("a mask applies to one image: select it first (result.select(index))")
        if not 0 <= from_stage < source.labels_BSN.shape[1]:
            raise ValueError(f"from_stage must be in [0, {source.labels_BSN.shape[1] - 1}], got {from_stage}")
        cells_N = mask_cells(mask_HW, int(round(N**0.5)))
        if not cells_N.any():
            raise ValueError(f"the mask covers no latent cell: paint at least {MASK_COVER:.0%} of a cell "
                             f"(a cell is 1/{int(round(N**0.5))} of the image side)")
        labels_N = source.labels_BSN[0, from_stage].cpu()
        return cls.from_clusters(source, from_stage, labels_N[torch.as_tensor(cells_N)].unique().tolist())

    # ---------------------------------------------------------------------------------------------
    # What the stage iterator asks
    # ---------------------------------------------------------------------------------------------

    @property
    def free_share(self) -> float:
        """The share of positions resampled from free_from on (1.0 for the prefix locks' later stages)."""
        return 1.0 if self.free_BN is None else float(self.free_BN.float().mean())

    def for_batch(self, batch: int, device: torch.device) -> Locks:
        """These locks for a run of `batch` images on `device` (a batch-1 lock is repeated)."""
        B = self.labels_BSN.shape[0]
        if B not in (1, batch):
            raise ValueError(f"locks for {B} images cannot apply to a batch of {batch}")

        def fit(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.expand(batch, *x.shape[1:]).to(device)

        return replace(self, labels_BSN=fit(self.labels_BSN), ids=tuple(fit(i) for i in self.ids), free_BN=fit(self.free_BN))

    def codes(self, stage: int, labels_BN: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(source codes (B, K), kept (B, K) bool) of a stage, or None when no code of it is kept."""
        if stage >= len(self.ids):
            return None
        ids_BK = self.ids[stage]
        if self.free_BN is None or stage < self.free_from:
            return ids_BK, torch.ones_like(ids_BK, dtype=torch.bool)
        free_BK = torch.zeros_like(ids_BK, dtype=torch.bool).scatter_(1, labels_BN, self.free_BN)
        return ids_BK, ~free_BK

    def next_map(self, stage: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(source map of stage + 1, kept (B, N) bool), or None when all of it is sampled."""
        if stage + 1 >= self.labels_BSN.shape[1]:
            return None
        labels_BN = self.labels_BSN[:, stage + 1]
        if self.free_BN is None or stage + 1 <= self.free_from:
            return labels_BN, torch.ones_like(labels_BN, dtype=torch.bool)
        return labels_BN, ~self.free_BN


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
