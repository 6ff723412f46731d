"""Stepping: an image's stages chosen one at a time from candidates, coarse to fine.

    candidates = pipe.next_stage(None, "fruit", num_candidates=4, seeds=[0, 1, 2, 3])   # stage 0
    path = candidates[2]                                  # its colour, and the split into two it leads to
    candidates = pipe.next_stage(path, "fruit", seeds=[4, 5, 6, 7])                     # stage 1
    path = candidates[0]
    candidates = pipe.next_stage(path, "flower", seeds=[8, 9, 10, 11])   # stage 2, drawn as another class
    result = pipe.finish(candidates[1], num_images=4, seeds=[12, 13, 14, 15])   # stages 3..8 in one go
    path = pipe.step_from(result, index=0, stage=4)       # any image's stages 0..4, to step on from

One stage of the stage iterator is one choice: stage k's codes (one per region of stage k's map, which the
path already has) and the split of every region into two for stage k + 1. A candidate costs one stage of
compute: the chosen stages are kept by Locks (the path's maps and codes), not run again. A finished image
is a locked run, so its recipe makes it again bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from .locks import Locks


@dataclass(frozen=True, eq=False)
class StagePath:
    """Stages 0..stage of one image, chosen.

    labels_SN: the maps of stages 0..stage + 1 (the last: the split the last chosen stage leads to; once
    every stage is chosen, the S maps). ids: the codes of stages 0..stage, stage s as (2^s,). class_ids and
    seeds: the class and the seed that drew each chosen stage (None: not known). image: the canvas after
    the last chosen stage, decoded (a preview; None when not made).
    """

    labels_SN: torch.Tensor
    ids: tuple[torch.Tensor, ...]
    class_ids: tuple[int, ...]
    seeds: tuple[int | None, ...]
    image: Image.Image | None = None

    def __post_init__(self) -> None:
        labels_SN = torch.as_tensor(self.labels_SN, dtype=torch.long).cpu()
        ids = tuple(torch.as_tensor(i, dtype=torch.long).cpu() for i in self.ids)
        if labels_SN.ndim != 2 or not ids or len(ids) not in (len(labels_SN) - 1, len(labels_SN)):
            raise ValueError(f"a path needs the maps of stages 0..k+1 (or 0..k at the last stage) and the codes of "
                             f"stages 0..k; got maps {tuple(labels_SN.shape)} and {len(ids)} stages of codes")
        if len(self.class_ids) != len(ids) or len(self.seeds) != len(ids):
            raise ValueError(f"a path of {len(ids)} stages needs a class and a seed for each, got "
                             f"{len(self.class_ids)} classes and {len(self.seeds)} seeds")
        object.__setattr__(self, "labels_SN", labels_SN)
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "class_ids", tuple(int(c) for c in self.class_ids))
        self.locks  # the maps are a balanced tree and every stage's codes have its shape (ValueError otherwise)

    @property
    def stage(self) -> int:
        """The last chosen stage."""
        return len(self.ids) - 1

    @property
    def chosen(self) -> str:
        """The chosen stages, for people: "stage 0" or "stages 0..k"."""
        return "stage 0" if self.stage == 0 else f"stages 0..{self.stage}"

    @property
    def complete(self) -> bool:
        """Whether the last stage is chosen (no split follows it)."""
        return len(self.ids) == len(self.labels_SN)

    @property
    def locks(self) -> Locks:
        """What a run keeps of the path: the maps of stages 0..stage + 1 and the codes of stages 0..stage."""
        return Locks(self.labels_SN[None], tuple(i[None] for i in self.ids))

    def shown_map(self) -> tuple[int, torch.Tensor]:
        """(stage, map) that a picture of the path shows over its canvas: the split its last chosen stage
        leads to (the last stage's own map once every stage is chosen)."""
        return len(self.labels_SN) - 1, self.labels_SN[-1]
