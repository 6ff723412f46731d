"""The page in headless Chromium (Debian's chromium, driven by Playwright): generate, sketch, reference, screenshots.

Skipped where Chromium or Playwright is missing; .ci/run installs both. Screenshots go to
$NVG_SCREENSHOTS (default: the test's temporary folder).
"""

import io
import os
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
playwright = pytest.importorskip("playwright.sync_api")

from app import handlers  # noqa: E402
from app.models import OFFICIAL_SOURCES, ModelStore  # noqa: E402
from app.ui import CSS, MAX_FILE_SIZE, build_demo  # noqa: E402
from hostile_files import hostile_files  # noqa: E402
from nvg_core.official import load_pipeline  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def page_url(tiny_pipeline):
    official = next(iter(OFFICIAL_SOURCES))  # not loadable offline: the picker must say so
    store = ModelStore({"tiny": "tiny", official: OFFICIAL_SOURCES[official]},  # classes known only once loaded
                       loader=lambda source: tiny_pipeline if source == "tiny" else load_pipeline(source))
    demo = build_demo(store)
    demo.queue(default_concurrency_limit=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size=MAX_FILE_SIZE, css=CSS)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def screenshots_folder(tmp_path: Path) -> Path:
    shots = Path(os.environ.get("NVG_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def open_page(p, url: str, width: int, height: int):
    """(browser, page): the app in headless Chromium at width x height, once its model is ready."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url, wait_until="load")
    page.get_by_text("tiny: 4 classes").wait_for(timeout=30_000)  # the model line once the model is ready
    return browser, page


def test_generate_stage_view_sketch_and_model_picker_in_the_browser(page_url, tmp_path):
    shots = screenshots_folder(tmp_path)
    with playwright.sync_playwright() as p:
        browser, page = open_page(p, page_url, 1280, 1800)
        page.get_by_label("Model", exact=True).click()
        page.get_by_role("option", name=next(iter(OFFICIAL_SOURCES))).click()
        page.get_by_text("could not be loaded").wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "model_picker_offline.png"), full_page=True)

        page.get_by_role("button", name="Generate", exact=True).click()
        page.get_by_text("done:").wait_for(timeout=60_000)
        page.locator("img[src$='.gif']").wait_for(timeout=30_000)  # the coarse-to-fine GIF
        page.screenshot(path=str(shots / "generate.png"), full_page=True)

        page.get_by_role("tab", name="Sketch").click()
        canvas = page.locator("canvas").first
        canvas.wait_for(timeout=20_000)
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
        page.mouse.down()
        for step in range(1, 21):
            page.mouse.move(box["x"] + box["width"] * (0.3 + 0.02 * step), box["y"] + box["height"] * (0.3 + 0.015 * step))
        page.mouse.up()
        page.screenshot(path=str(shots / "sketch_drawn.png"), full_page=True)
        page.get_by_role("button", name="Generate from sketch").click()
        page.get_by_text("agreement with the drawing").wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "sketch_generated.png"), full_page=True)

        # A transparent PNG reaches the handler as the uploaded file, not as Gradio's RGB copy.
        transparent = tmp_path / "transparent.png"
        transparent.write_bytes(hostile_files()["half transparent"][0])
        page.get_by_role("tab", name="Reference").click()
        page.locator("#reference-image input[type=file]").set_input_files(str(transparent))
        page.get_by_text("transparency composited on white").wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "reference_transparent.png"), full_page=True)

        browser.close()
    assert (shots / "sketch_generated.png").stat().st_size > 0


def shown(page, clip: dict) -> np.ndarray:
    """(H, W, 3) int: what the page shows in the `clip` rectangle."""
    return np.asarray(Image.open(io.BytesIO(page.screenshot(clip=clip))).convert("RGB")).astype(int)


def test_paint_a_mask_and_regenerate_under_it_in_the_browser(page_url, tmp_path):
    """Brush strokes on the Edit canvas reach edit_region as a painted layer.

    The editor's canvas element is wider than the image, which sits centred in it at the editor's zoom, and
    the brush ignores a stroke that starts off the image: strokes must start inside the image's box
    (handlers.EDIT_SIZE pixels times the zoom shown in the editor's toolbar, centred in the canvas).
    """
    shots = screenshots_folder(tmp_path)
    with playwright.sync_playwright() as p:
        browser, page = open_page(p, page_url, 1400, 900)
        page.screenshot(path=str(shots / "first_view_1400x900.png"))  # what a person sees before scrolling
        page.get_by_role("button", name="Generate", exact=True).click()
        page.get_by_text("done:").wait_for(timeout=60_000)

        page.get_by_text("Edit a region or a cluster").click()
        editor = page.locator("#edit-mask")
        canvas = editor.locator("canvas").first
        canvas.wait_for(timeout=20_000)
        editor.evaluate("e => e.scrollIntoView({block: 'center'})")
        page.wait_for_timeout(500)
        box = canvas.bounding_box()
        for _ in range(100):  # the background (the generated image) arrives after the state changes
            middle = {"x": box["x"] + box["width"] / 2 - 50, "y": box["y"] + box["height"] / 2 - 50, "width": 100, "height": 100}
            if len(np.unique(shown(page, middle).reshape(-1, 3), axis=0)) > 4:
                break
            page.wait_for_timeout(200)
        else:
            raise AssertionError("the generated image never appeared in the Edit canvas")
        page.wait_for_timeout(300)
        zoom = float(editor.locator(".zoom-number span").inner_text().strip().rstrip("%")) / 100
        side = handlers.EDIT_SIZE * zoom  # the image's box in the page
        left, top = box["x"] + (box["width"] - side) / 2, box["y"] + (box["height"] - side) / 2
        clip = {"x": left, "y": top, "width": side, "height": side}
        # The brush is the editor's default tool (sources=(), a brush given).
        for row in range(6):  # a band over the left part of the image, every stroke starting on the image
            y = top + side * (0.2 + 0.1 * row)
            page.mouse.move(left + side * 0.1, y)
            page.mouse.down()
            page.mouse.move(left + side * 0.4, y, steps=3)
            page.mouse.up()
        page.wait_for_timeout(300)
        page.screenshot(path=str(shots / "edit_painted.png"))
        magenta = (np.abs(shown(page, clip) - [255, 0, 255]).sum(axis=-1) < 60).mean()  # the brush colour
        assert 0.15 < magenta < 0.6, f"the brush strokes did not show on the editor ({magenta:.0%} of the image painted)"

        page.get_by_role("button", name="Regenerate under the mask").click()
        done = page.get_by_text("resampled under the mask")
        empty = page.get_by_text("paint over the part of the image to regenerate first")
        done.or_(empty).first.wait_for(timeout=60_000)
        assert not empty.count(), "the handler received no painted layer"
        status = done.first.inner_text()
        freed = [int(x) for x in re.search(r"stages \d+\.\.\d+: ([\d% ]+)\)", status).group(1).replace("%", "").split()]
        assert 0 < freed[-1] < 100, status  # part of the image, not none and not all of it
        page.wait_for_timeout(500)  # the edited image becomes the editor's new background
        editor.locator("[data-testid='status-tracker'].hide").wait_for(state="attached", timeout=30_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(shots / "edit_regenerated.png"), full_page=True)
        browser.close()
    assert (shots / "edit_regenerated.png").stat().st_size > 0
