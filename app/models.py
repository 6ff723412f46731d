"""The model picker's side: named model sources, each loaded once per process, in the background.

A ModelStore maps picker labels to sources (a model folder or a hub id; None is the bundled model). The
first request for a model starts loading it on a thread; until it is ready, requests get a "still loading"
UserError, and a model that failed to load says why (picking it again retries).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nvg_core.official import OFFICIAL_CLASS_NAMES, OFFICIAL_HUB_ID, load_pipeline
from nvg_core.pipeline import BUNDLED_MODEL, MODEL_INDEX, NVGPipeline, sampling_defaults
from nvg_core.sampling import SamplingOptions, official_options
from nvg_core.structure import num_stages

from .handlers import UserError

RETRY_AFTER_S = 5.0  # picking a model that failed less than this long ago shows its error again, no new load
log = logging.getLogger("nvg_studio")

BUNDLED_LABEL = "emoji32 (bundled, fast on CPU)"
OFFICIAL_SOURCES = {
    "ImageNet d16 (official, from the hub; GPU advised)": "yikaiwang/nvg",
    "ImageNet d20 (official, from the hub; GPU)": "yikaiwang/nvg:d20",
    "ImageNet d24 (official, from the hub; GPU)": "yikaiwang/nvg:d24",
}


def default_sources(model: str | None = None) -> dict[str, str | None]:
    """The picker's entries: `model` (a folder or hub id from --model) first when given, then the bundled
    model and the official ImageNet models."""
    sources = {BUNDLED_LABEL: None, **OFFICIAL_SOURCES}
    if model and model not in sources.values():
        sources = {model: model, **sources}
    return sources


@dataclass
class ModelInfo:
    """What the page needs to know about a model before it is loaded."""

    class_names: list[str]
    num_stages: int
    defaults: SamplingOptions  # its sampling defaults, written out (what pipe.default_options will be)


def peek(source: str | None) -> ModelInfo | None:
    """A model's classes, stage count and sampling defaults without loading its weights (None when unknown
    until it loads). The authors' checkpoints are converted with the authors' settings (official_options)."""
    folder = Path(source) if source else BUNDLED_MODEL
    transformer_config = folder / "transformer" / "config.json"
    if (folder / MODEL_INDEX).is_file() and transformer_config.is_file():
        grid = json.loads(transformer_config.read_text())["grid_size"]
        index = json.loads((folder / MODEL_INDEX).read_text())
        S = num_stages(grid * grid)
        return ModelInfo(index["class_names"], S, sampling_defaults(index, S))
    if source and OFFICIAL_HUB_ID.fullmatch(source):
        S = num_stages(16 * 16)
        return ModelInfo(list(OFFICIAL_CLASS_NAMES), S, official_options(S))
    return None


class ModelLoading(UserError):
    """The model asked for is still loading (a UserError, so the page shows it as it is)."""


class ModelStore:
    """Pipelines by picker label, each loaded at most once per process and shared by every session."""

    def __init__(self, sources: dict[str, str | None],
                 loader: Callable[[str | None], NVGPipeline] = load_pipeline):
        if not sources:
            raise ValueError("a ModelStore needs at least one model source")
        self.sources = dict(sources)
        self._loader = loader
        self._pipes: dict[str, NVGPipeline] = {}
        self._errors: dict[str, float] = {}  # name: when its load failed
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    @classmethod
    def of(cls, pipe: NVGPipeline) -> ModelStore:
        """A store holding one already loaded pipeline (tests, notebooks)."""
        store = cls({pipe.name: None}, loader=lambda source: pipe)
        store._pipes[pipe.name] = pipe
        return store

    @property
    def names(self) -> list[str]:
        return list(self.sources)

    @property
    def default(self) -> str:
        return self.names[0]

    def info(self, name: str) -> ModelInfo | None:
        """The classes, stage count and sampling defaults of a model, loaded or not (None when unknown until
        it loads)."""
        if name in self._pipes:
            pipe = self._pipes[name]
            return ModelInfo(pipe.class_names, pipe.num_stages, pipe.default_options)
        return peek(self.sources.get(name))

    def start(self, name: str) -> None:
        """Begin loading a model on a thread unless it is loaded or loading; a load that failed more than
        RETRY_AFTER_S ago is retried (a picker that sends its input twice does not retry a fresh failure,
        whose error both replies then show)."""
        if name not in self.sources:
            raise UserError(f"unknown model {name!r}; choose one of: {', '.join(self.names)}")
        with self._lock:
            failed = self._errors.get(name)
            if name in self._pipes or self.loading(name) or (failed and time.monotonic() - failed < RETRY_AFTER_S):
                return
            self._errors.pop(name, None)
            thread = threading.Thread(target=self._load, args=(name,), daemon=True, name=f"load {name}")
            thread.start()
            self._threads[name] = thread  # registered once started: get() joins it without the lock

    def _load(self, name: str) -> None:
        try:
            pipe = self._loader(self.sources[name])
        except Exception as error:  # kept for the people who ask for this model; the details go to the log
            log.info("the model %r could not be loaded: %s: %s", name, type(error).__name__, error)
            self._errors[name] = time.monotonic()
        else:
            self._pipes[name] = pipe

    def loading(self, name: str) -> bool:
        thread = self._threads.get(name)
        return thread is not None and thread.is_alive()

    def get(self, name: str | None, wait: float = 0.0) -> NVGPipeline:
        """The loaded pipeline, or ModelLoading (still loading) or a UserError (could not be loaded).

        The first request for a model starts loading it; wait is how many seconds to wait for a load in
        progress (0: answer at once). A failed load stays failed until start() is called again.
        """
        name = name or self.default
        if name in self._pipes:
            return self._pipes[name]
        if name not in self._threads:
            self.start(name)
        self._threads[name].join(wait)
        if name in self._pipes:
            return self._pipes[name]
        if name in self._errors:
            raise UserError(f"{name} could not be loaded (offline, or its files are missing or broken); "
                            "details are in the server log")
        raise ModelLoading(f"the model {name!r} is still loading; try again in a moment")

