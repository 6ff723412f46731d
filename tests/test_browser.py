"""The page in headless Chromium (Debian's chromium, driven by Playwright): generate, sketch, reference, screenshots.

Skipped where Chromium or Playwright is missing; .ci/run installs both. Screenshots go to
$NVG_SCREENSHOTS (default: the test's temporary folder).
"""

import os
import shutil
import socket
from pathlib import Path

import pytest

pytest.importorskip("gradio")
playwright = pytest.importorskip("playwright.sync_api")

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


def test_generate_stage_view_sketch_and_model_picker_in_the_browser(page_url, tmp_path):
    shots = Path(os.environ.get("NVG_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1800})
        page.goto(page_url, wait_until="load")
        page.get_by_text("tiny: 4 classes").wait_for(timeout=30_000)  # the model line once the model is ready
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

