"""A visitor's history kept in their own browser, so that a reload keeps it.

A result's recipes make its images again bit for bit, so the browser keeps only those and a small thumbnail
per entry (gr.BrowserState: the browser's localStorage, encrypted with the server's secret, so it survives a
reload but not a server restart). About 1-2 KB an entry for the bundled model (an inpainting also keeps its
source image, a few KB more); at most history.MAX_ENTRIES entries per model and MAX_STORED_BYTES in all, the
oldest dropped first.

A reload brings back the entries made by the model the page opens with; the current one is made again at
once (one run), the others when they are opened. Entries made by other models stay stored, and come back
with their model.

What the browser sends back is a stranger's data: every field is checked, a thumbnail is decoded only when
small, and anything else is dropped, never an error.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import weakref
from typing import Any

from PIL import Image

from nvg_core.images import to_pil
from nvg_core.recipe import Recipe, png_bytes

from .history import MAX_ENTRIES, Entry, History

STORAGE_KEY = "nvg-studio-history"
MAX_STORED_BYTES = 1_000_000  # the JSON of every model's entries together (localStorage holds about 5 MB)
THUMBNAIL_SIZE = 64  # pixels, the longest side
MAX_THUMBNAIL_BYTES = 48_000  # base64 characters
MAX_RECIPE_BYTES = 200_000  # JSON characters (an inpainting's recipe carries its source image)
log = logging.getLogger("nvg_studio")


_encoded: weakref.WeakKeyDictionary[Entry, dict | None] = weakref.WeakKeyDictionary()  # entries never change


def _entry_data(entry: Entry) -> dict | None:
    """An entry as the browser keeps it (encoded once per entry); None when its images have no recipes."""
    if entry not in _encoded:
        _encoded[entry] = _encode(entry)
    return _encoded[entry]


def _encode(entry: Entry) -> dict | None:
    recipes = entry.result.recipes if entry.result is not None else entry.recipes
    if not recipes or any(r is None for r in recipes):
        return None
    thumbnail = entry.thumbnail if entry.result is None else to_pil(entry.result.images[:1])[0]
    thumbnail = thumbnail.copy()
    thumbnail.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    return {"label": entry.label, "seeds": list(entry.seeds), "recipes": [r.to_json() for r in recipes],
            "thumbnail": base64.b64encode(png_bytes(thumbnail)).decode()}


def stored(history: History | None, kept: Any) -> dict:
    """What the browser keeps: for every model in the history its entries (oldest first), and what `kept`
    (the browser's previous value) holds for the other models."""
    by_model = {model: list(entries) for model, entries in kept.items() if isinstance(entries, list)} \
        if isinstance(kept, dict) else {}
    if isinstance(history, History):
        for model in {entry.model for entry in history.entries}:
            data = [_entry_data(entry) for entry in history.entries if entry.model == model]
            by_model[model] = [d for d in data if d is not None][-MAX_ENTRIES:]
    while len(json.dumps(by_model)) > MAX_STORED_BYTES and any(by_model.values()):
        max(by_model.values(), key=len).pop(0)  # the oldest entry of the longest list
    return by_model


def _thumbnail(text: Any) -> Image.Image | None:
    if not isinstance(text, str) or len(text) > MAX_THUMBNAIL_BYTES:
        return None
    try:
        image = Image.open(io.BytesIO(base64.b64decode(text, validate=True)))
        if max(image.size) > 4 * THUMBNAIL_SIZE:  # read from the header, before decoding any pixels
            return None
        return image.convert("RGB")
    except (binascii.Error, OSError, ValueError, Image.DecompressionBombError):
        return None


def _entry(data: Any, model: str) -> Entry | None:
    """A stored entry (no images yet) from the browser's data; None when any field is not as written."""
    try:
        label, seeds, recipes = data["label"], data["seeds"], data["recipes"]
        if not (isinstance(label, str) and len(label) <= 200 and isinstance(seeds, list) and isinstance(recipes, list)
                and 0 < len(recipes) == len(seeds) <= 64 and all(type(s) is int for s in seeds)
                and all(isinstance(r, str) and len(r) <= MAX_RECIPE_BYTES for r in recipes)):
            return None
        thumbnail = _thumbnail(data.get("thumbnail"))
        return Entry(None, seeds, model, label, tuple(Recipe.from_json(r) for r in recipes), thumbnail) \
            if thumbnail is not None else None
    except (KeyError, TypeError, ValueError) as error:
        log.info("dropped a stored history entry: %s", error)
        return None


def restored(kept: Any, model: str) -> History:
    """The history a reload brings back for `model`: its stored entries, the last one current (not made
    again yet: handlers.load_history does that)."""
    data = kept.get(model) if isinstance(kept, dict) else None
    entries = [e for e in (_entry(d, model) for d in (data if isinstance(data, list) else [])[-MAX_ENTRIES:])
               if e is not None]
    return History(tuple(entries), len(entries) - 1, 1) if entries else History()
