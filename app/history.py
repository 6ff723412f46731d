"""A visitor's history of results: every generate, regenerate, edit, sketch, reference or opened image is an entry.

The page keeps one History per visitor in a gr.State. A History is immutable: adding, restoring, undoing or
redoing returns a new one (so the State's change event fires and the views follow the current entry).
Entries are kept in the order they were made; restoring an older entry and locking or editing from it adds
a new entry at the end (a branch), so nothing is ever overwritten. Undo and redo move the current position
one entry back or forward.

An entry the browser kept across a reload (app/browser_history.py) comes back as its recipes and a thumbnail,
without images: it is made again when it is opened (handlers.restore), so the current entry always has them.

Memory is bounded: at most MAX_ENTRIES entries and MAX_BYTES of tensors per visitor (the oldest entries go
first; the current one always stays). A bundled-model entry of 4 images holds about 0.4 MB
(Entry.nbytes; the images and the maps dominate), so a full history of the bundled model is about 10 MB.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from PIL import Image

from nvg_core.recipe import Recipe
from nvg_core.sampling import NVGResult

MAX_ENTRIES = 24
MAX_BYTES = 64 * 2**20


@dataclass(frozen=True, eq=False)
class Entry:
    """One result: the images and everything needed to lock, edit or reproduce them."""

    result: NVGResult | None  # None: a stored entry, made again from `recipes` when opened
    seeds: list[int]
    model: str  # the name of the model that made it
    label: str  # what made it, for the history strip's caption: "generate smiley", "edit (mask) ..."
    recipes: tuple[Recipe, ...] = ()  # a stored entry's images' recipes (a made entry's are result.recipes)
    thumbnail: Image.Image | None = None  # a stored entry's first image, small

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data this entry keeps alive."""
        if self.result is None:
            return 0
        tensors = [self.result.class_labels_BS, self.result.labels_BSN, *self.result.ids,
                   self.result.canvas_BNC, self.result.images]
        return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


@dataclass(frozen=True, eq=False)
class History:
    """The entries (oldest first) and the position of the current one (-1: none yet)."""

    entries: tuple[Entry, ...] = ()
    position: int = -1
    version: int = 0  # counts changes: the page's State compares hashes to see a change (Gradio's deep_hash)

    def __hash__(self) -> int:
        return hash(self.version)

    @property
    def current(self) -> Entry | None:
        return self.entries[self.position] if self.entries else None

    def add(self, entry: Entry) -> History:
        """`entry` appended and made current; the oldest entries dropped beyond MAX_ENTRIES or MAX_BYTES."""
        entries = (*self.entries, entry)
        while len(entries) > MAX_ENTRIES or (len(entries) > 1 and sum(e.nbytes for e in entries) > MAX_BYTES):
            entries = entries[1:]
        return History(entries, len(entries) - 1, self.version + 1)

    def go(self, position: int) -> History:
        """Entry `position` (from 0, oldest first) made current."""
        if not 0 <= position < len(self.entries):
            raise IndexError(f"history entry {position + 1} does not exist; there are {len(self.entries)}")
        return replace(self, position=position, version=self.version + 1)

    def made(self, position: int, entry: Entry) -> History:
        """Entry `position` replaced by `entry` (a stored entry made again) and made current."""
        entries = (*self.entries[:position], entry, *self.entries[position + 1:])
        return History(entries, position, self.version + 1)

    def undo(self) -> History:
        """The entry before the current one (unchanged at the first)."""
        return self.go(max(self.position - 1, 0)) if self.entries else self

    def redo(self) -> History:
        """The entry after the current one (unchanged at the last)."""
        return self.go(min(self.position + 1, len(self.entries) - 1)) if self.entries else self

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self.entries)
