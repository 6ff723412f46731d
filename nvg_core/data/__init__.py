"""Datasets: the emoji-32 set (data.emoji) and your own image folders (data.folder), read for training alike.

`load_training_set(path)` takes either: a .npz from `nvg data emoji` (its training split: every emoji not
held out for `nvg eval`; classes where direction matters are never mirrored) or a folder from
`nvg data folder` (every image; every image may be mirrored). Images stay memory-mapped where the format
allows, so a large folder dataset is read batch by batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class TrainingSet:
    """Training images with their classes; arrays index the same N images."""

    images: np.ndarray  # (N, H, W, 3) uint8, possibly memory-mapped
    label: np.ndarray  # (N,) int64 class index, -1 for images without a class (the tokenizer still uses them)
    flip_ok: np.ndarray  # (N,) bool: may be mirrored
    classes: tuple[str, ...]
    source: str  # what the data is, for model cards

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])


def load_training_set(path: str | Path) -> TrainingSet:
    """The training images of an emoji .npz or a folder dataset (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        from .folder import load_folder_dataset
        data = load_folder_dataset(path)
        return TrainingSet(data.images, data.label.astype(np.int64), np.ones(len(data.label), bool), data.classes,
                           f"the image folder dataset `{path}` ({len(data.label)} images)")
    from .emoji import CLASSES, NO_FLIP_CLASSES, load_emoji_dataset, split_by_emoji
    data = load_emoji_dataset(path)
    train_idx, _ = split_by_emoji(data.emoji)
    if len(train_idx) == 0:
        raise ValueError("the dataset has no training images: every emoji in it is in the held-out split")
    label = data.label[train_idx].astype(np.int64)
    flip_ok = (label >= 0) & ~np.isin(label, [CLASSES.index(c) for c in NO_FLIP_CLASSES])
    return TrainingSet(data.images[train_idx], label, flip_ok, data.classes,
                       f"the emoji-32 training split ({len(train_idx)} images)")
