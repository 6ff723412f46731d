"""The server's bounds on one request: nvg_core's Limits, lowered for a page that strangers use.

Every action that runs a model passes SERVER_LIMITS to nvg_core, which checks the run before computing
anything (images, flow steps, estimated memory) and stops it at the time budget; the page's sliders take
their ranges from the same values (handlers.LIMITS). A server sets them with environment variables (a
Space's variables), read once at start:

    NVG_MAX_IMAGES      images (or variations) per request      default 8, at most nvg_core's 1024
    NVG_MAX_FLOW_STEPS  structure flow steps                    default 50, at most nvg_core's 1000
    NVG_MAX_SECONDS     time budget of one request, seconds      default 120
    NVG_MEMORY_SHARE    share of the available memory one run may take (its estimated peak)   default 0.5
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Callable, Mapping

from nvg_core.limits import Limits

# Visitors whose session (history, component values) the server keeps in memory, the most recently active
# first (Gradio's state_session_capacity; its default is 10,000). A full history of the bundled model is
# about 3 MB, and Gradio keeps a closed session for an hour.
MAX_SESSIONS = 500
DEFAULTS = {"NVG_MAX_IMAGES": ("max_images", int, 8), "NVG_MAX_FLOW_STEPS": ("max_flow_steps", int, 50),
            "NVG_MAX_SECONDS": ("max_seconds", float, 120.0), "NVG_MEMORY_SHARE": ("memory_share", float, 0.5)}


def server_limits(environ: Mapping[str, str] = os.environ) -> Limits:
    """The server's Limits: DEFAULTS, each overridden by its environment variable; a ValueError naming the
    variable for a value that is not a number or out of nvg_core's range."""
    values = {}
    for variable, (field, kind, default) in DEFAULTS.items():
        text = environ.get(variable, "").strip()
        try:
            values[field] = kind(text) if text else default
        except ValueError:
            raise ValueError(f"{variable} must be a {'whole ' if kind is int else ''}number, got {text!r}") from None
    try:
        return Limits(**values)
    except ValueError as error:
        raise ValueError(f"the server limits set by {', '.join(DEFAULTS)} are not valid: {error}") from error


SERVER_LIMITS = server_limits()


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, where the C library has it (Linux with glibc); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Give the heap's free pages back to the system after a request. A server's requests interleave
    short-lived model buffers with long-lived history entries, and glibc keeps the freed pages between them:
    with 20 visitors at once the resident memory kept growing by tens of MB a round without this
    (bench/bench_load.py; docs/benchmarks.md). A no-op where glibc's malloc_trim is missing."""
    if _TRIM is not None:
        _TRIM(0)
