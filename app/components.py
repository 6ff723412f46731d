"""Gradio inputs that hand the handlers what the person sent, untouched, so nvg_core reads it.

Gradio's own preprocessing converts uploads to RGB (losing transparency, 16-bit depth and EXIF orientation,
re-encoding CMYK JPEGs) and fails with a generic message on files it cannot open or numbers it cannot
round. These subclasses look and behave the same in the page (is_template: the built-in frontend), but
pass the upload's file path or the raw number through; app.handlers validates and nvg_core decodes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.data_classes import FileData
from PIL import Image

from nvg_core.recipe import png_bytes

from .handlers import KEEP, Download


def _path(file: FileData | bytes | None) -> str | bytes | None:
    return file.path if isinstance(file, FileData) else file


class RawImage(gr.Image):
    """gr.Image whose handler receives the uploaded file's path (type="filepath"), never a converted copy."""

    is_template = True

    def preprocess(self, payload: Any) -> str | None:
        return None if payload is None else payload.path


class RawImageEditor(gr.ImageEditor):
    """gr.ImageEditor whose handler receives {"background", "layers", "composite"} as the uploaded files' paths."""

    is_template = True

    def convert_and_format_image(self, file: FileData | bytes | None, flatten_on_white: bool = False) -> str | bytes | None:
        return _path(file)


class RawNumber(gr.Number):
    """gr.Number whose handler receives the value as sent (the handler checks type, finiteness and range)."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return payload


class RawSlider(gr.Slider):
    """gr.Slider whose handler receives the value as sent (the handler checks type, finiteness and range)."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return payload


class ImageFiles:
    """Files for the images (PIL, PNG with any recipe they carry) and downloads (handlers.Download) an event
    returns, written once (atomically) and never rewritten.

    A file is named by its content: Gradio saves a returned PIL image by rewriting its content-addressed file
    in place on every return, so a download of a file shared by two responses can be cut short; a file here
    is complete from the moment it has a name. A Download keeps its readable name inside a folder named by
    its content (the browser saves it under that name). Gradio serves these files from its cache folder
    without copying them, and its age-based cleanup (delete_cache) removes them.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def path(self, data: bytes, suffix: str, name: str | None = None) -> str:
        digest = hashlib.sha256(data).hexdigest()[:32]
        path = self.folder / digest / name if name else self.folder / f"{digest}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.utime(path)  # handed out again: young again for the cleanup
        except FileNotFoundError:
            descriptor, staging = tempfile.mkstemp(dir=path.parent, prefix=".staging_")
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
            os.replace(staging, path)
        return str(path)

    def replace(self, value: Any, sent: dict[int, tuple[Any, str]] | None = None) -> Any:
        """`value` with every PIL image, Download and GIF bytes in it (lists and tuples included) replaced by
        a file path, and every handlers.KEEP by gr.skip() (the component keeps what it shows).

        sent: the images one stream has already turned into files, by id (kept alive in it, so an id is not
        reused): a stream that yields its growing stage strip again after every stage encodes each tile once.
        """
        if value is KEEP:
            return gr.skip()
        if isinstance(value, (Image.Image, Download)):
            if sent is not None and id(value) in sent:
                return sent[id(value)][1]
            data = value.data if isinstance(value, Download) else value
            payload = data if isinstance(data, bytes) else png_bytes(data)
            path = self.path(payload, ".gif" if isinstance(data, bytes) else ".png",
                             value.name if isinstance(value, Download) else None)
            if sent is not None:
                sent[id(value)] = (value, path)
            return path
        if isinstance(value, bytes) and value[:6] in (b"GIF87a", b"GIF89a"):
            return self.path(value, ".gif")
        if isinstance(value, (list, tuple)):
            return type(value)(self.replace(item, sent) for item in value)
        return value
