"""The page in headless Chromium (Debian's chromium, driven by Playwright): generate, sketch, reference, history,
opening an NVG image, an inpainting and a second edit in a row, screenshots.

Skipped where Chromium or Playwright is missing; .ci/run installs both. Screenshots go to
$NVG_SCREENSHOTS (default: the test's temporary folder).
"""

import io
import os
import re
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
playwright = pytest.importorskip("playwright.sync_api")

from app import handlers  # noqa: E402
from app.models import OFFICIAL_SOURCES, ModelStore  # noqa: E402
from app.ui import CSS, EXAMPLES, MAX_FILE_SIZE, build_demo  # noqa: E402
from conftest import make_tiny_pipeline  # noqa: E402
from hostile_files import hostile_files  # noqa: E402
from nvg_core.images import PERCEPTIBLE  # noqa: E402
from nvg_core.official import load_pipeline  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def slow_tiny_pipeline():
    """The tiny model made slow (0.3 s a network pass, about 1.2 s a stage), so a person can press Stop in the
    middle of a run."""
    pipe = make_tiny_pipeline(name="slow")
    for embed in (pipe.transformer.content_embed, pipe.transformer.structure_embed):  # the first layer of each pass
        embed.register_forward_pre_hook(lambda *_: time.sleep(0.3))
    return pipe


@pytest.fixture(scope="module")
def page_url(tiny_pipeline):
    official = next(iter(OFFICIAL_SOURCES))  # not loadable offline: the picker must say so
    models = {"tiny": tiny_pipeline, "slow": slow_tiny_pipeline()}
    store = ModelStore({"tiny": "tiny", "slow": "slow", official: OFFICIAL_SOURCES[official]},  # classes known once loaded
                       loader=lambda source: models[source] if source in models else load_pipeline(source))
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
        page.get_by_text("could not be loaded").first.wait_for(timeout=60_000)  # a short notice
        page.screenshot(path=str(shots / "model_picker_offline.png"), full_page=True)
        page.get_by_text("tiny: 4 classes").wait_for(timeout=30_000)  # the page is back on the default model
        assert page.get_by_label("Model", exact=True).input_value() == "tiny"

        page.locator("#first-view img").wait_for(timeout=10_000)  # what NVG makes, until the first result
        page.get_by_role("button", name="Generate", exact=True).click()
        page.get_by_text("done:").wait_for(timeout=60_000)
        page.locator("#first-view").wait_for(state="hidden", timeout=10_000)
        page.locator("#progression img[src$='.gif']").wait_for(timeout=30_000)  # the coarse-to-fine GIF
        assert page.locator("#stage-strip img").count() == 5  # every stage of the tiny model's image
        page.screenshot(path=str(shots / "generate.png"), full_page=True)

        page.get_by_role("tab", name="Sketch").click()
        page.locator("#sketch canvas").first.wait_for(timeout=20_000)
        first = stroke(page, "#sketch canvas", 0.3)
        page.screenshot(path=str(shots / "sketch_drawn.png"), full_page=True)
        page.get_by_role("button", name="Generate from sketch").click()
        page.get_by_text("agreement with the drawing").wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "sketch_generated.png"), full_page=True)

        # Start over clears a drawn canvas at once, and the canvas takes new strokes
        assert (shown(page, first) < 200).any()
        page.get_by_role("button", name="Start over").click()
        page.wait_for_function("() => document.querySelector('#sketch [data-testid=status-tracker]').classList.contains('hide')",
                               timeout=5_000)
        second = stroke(page, "#sketch canvas", 0.6)
        page.wait_for_timeout(500)
        page.screenshot(path=str(shots / "sketch_started_over.png"), full_page=True)
        assert (shown(page, first) >= 250).all() and (shown(page, second) < 200).any()
        page.locator("#sketch button[title='Color']").click()  # the palette's swatches are named
        page.locator("#sketch button.color[title='red'][aria-label='red']").wait_for(timeout=5_000)
        assert page.locator("#sketch button.color[title]").count() == 8

        # A transparent PNG reaches the handler as the uploaded file, not as Gradio's RGB copy.
        transparent = tmp_path / "transparent.png"
        transparent.write_bytes(hostile_files()["half transparent"][0])
        page.get_by_role("tab", name="Reference").click()
        page.locator("#reference-image input[type=file]").set_input_files(str(transparent))
        page.get_by_text("transparency composited on white").wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "reference_transparent.png"), full_page=True)

        browser.close()
    assert (shots / "sketch_generated.png").stat().st_size > 0


def test_stop_in_the_middle_of_a_run_keeps_its_stages_and_the_history_as_it_was(page_url, tmp_path):
    shots = screenshots_folder(tmp_path)
    with playwright.sync_playwright() as p:
        browser, page = open_page(p, page_url, 1280, 1000)
        stop = page.locator("#stop")
        assert stop.is_disabled()  # nothing runs yet
        page.get_by_label("Model", exact=True).click()
        page.get_by_role("option", name="slow").click()
        page.get_by_text("slow: 4 classes").wait_for(timeout=30_000)
        page.locator("#status").click()
        page.keyboard.press("Control+Enter")  # the Generate tab's shortcut
        page.get_by_text(re.compile("made stages 0..[12] of 0..4")).wait_for(timeout=30_000)
        stop.click()
        page.get_by_text("Stopped: the stages made so far stay in view").wait_for(timeout=10_000)
        page.screenshot(path=str(shots / "stopped.png"), full_page=True)
        generate = page.get_by_role("button", name="Generate", exact=True)
        assert generate.is_enabled() and stop.is_disabled()
        tiles = page.locator("#stage-strip img").count()
        page.wait_for_timeout(3_000)  # the run made no more stages, and nothing joined the history
        assert 2 <= page.locator("#stage-strip img").count() == tiles < 5
        assert page.locator("#history img").count() == 0
        assert "Stopped" in page.locator("#status").inner_text()

        page.keyboard.press("Control+Enter")  # the next run goes to the end
        wait_until_settled(page, 1)
        assert page.locator("#stage-strip img").count() == 5
        browser.close()


def wait_until_settled(page, history: int) -> None:
    """Wait for a result to be on the page: `history` entries, every image loaded, the buttons back."""
    page.wait_for_function("n => document.querySelectorAll('#history img').length === n && "
                           "[...document.querySelectorAll('#images img, #history img')].every(i => i.complete && i.naturalWidth) && "
                           "![...document.querySelectorAll('button')].some(b => b.disabled && /[.][.][.]$/.test(b.textContent.trim()))",
                           arg=history, timeout=60_000)


def sources(page, selector: str) -> list[str]:
    return page.locator(selector).evaluate_all("images => images.map(i => i.getAttribute('src'))")


def test_a_reference_example_refreshes_the_structure_maps(page_url, tmp_path):
    with playwright.sync_playwright() as p:
        browser, page = open_page(p, page_url, 1400, 900)
        page.get_by_role("tab", name="Reference").click()
        examples = page.locator("button.gallery-item:has(img[src*='reference_'])")  # the example references
        examples.first.wait_for(timeout=20_000)
        maps = "#reference-maps img"
        seen = []
        for n in range(2):
            examples.nth(n).click()
            page.wait_for_function(f"prev => {{ const s = [...document.querySelectorAll('{maps}')].map(i => i.src).join(); "
                                   "return s.length > 0 && s !== prev; }", arg=",".join(seen[-1]) if seen else "",
                                   timeout=60_000)
            seen.append(sources(page, maps))
        assert len(seen[1]) == 5 and seen[0] != seen[1]  # the second example's maps, not the first one's
        browser.close()


def shown(page, clip: dict) -> np.ndarray:
    """(H, W, 3) int: what the page shows in the `clip` rectangle."""
    return np.asarray(Image.open(io.BytesIO(page.screenshot(clip=clip))).convert("RGB")).astype(int)


def stroke(page, selector: str, top: float) -> dict:
    """Draw a slanted stroke on the canvas at `selector` from (0.3, top), as fractions of its box; the clip
    of a point on its path (for shown)."""
    box = page.locator(selector).first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * top)
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(box["x"] + box["width"] * (0.3 + 0.02 * step), box["y"] + box["height"] * (top + 0.015 * step))
    page.mouse.up()
    return {"x": box["x"] + box["width"] * 0.5 - 1, "y": box["y"] + box["height"] * (top + 0.15) - 1, "width": 3, "height": 3}


def paint_band(page, left: float = 0.1, right: float = 0.4, top: float = 0.2, bottom: float = 0.7, gap: float = 0.1) -> None:
    """Paint horizontal strokes from `left` to `right` every `gap` from `top` to `bottom` (fractions of the
    image) in the Edit canvas, every stroke starting on the image; the brush (16 of handlers.EDIT_SIZE px)
    paints a solid band when gap <= 0.05.

    The editor's canvas element is wider than the image, which sits centred in it at the editor's zoom, and
    the brush ignores a stroke that starts off the image: strokes start inside the image's box
    (handlers.EDIT_SIZE pixels times the zoom shown in the editor's toolbar, centred in the canvas)."""
    editor = page.locator("#edit-mask")
    canvas = editor.locator("canvas").first
    canvas.wait_for(timeout=20_000)
    editor.evaluate("e => e.scrollIntoView({block: 'center'})")
    page.wait_for_timeout(500)
    box = canvas.bounding_box()
    middle = {"x": box["x"] + box["width"] / 2 - 50, "y": box["y"] + box["height"] / 2 - 50, "width": 100, "height": 100}
    for _ in range(100):  # the background (the viewed image) arrives after the history changes
        if len(np.unique(shown(page, middle).reshape(-1, 3), axis=0)) > 4:
            break
        page.wait_for_timeout(200)
    else:
        raise AssertionError("the viewed image never appeared in the Edit canvas")
    page.wait_for_timeout(300)
    zoom = float(editor.locator(".zoom-number span").inner_text().strip().rstrip("%")) / 100
    side = handlers.EDIT_SIZE * zoom
    x0, y0 = box["x"] + (box["width"] - side) / 2, box["y"] + (box["height"] - side) / 2
    clip = {"x": x0 + side * (left + 0.05), "y": y0 + side * (top + 0.05), "width": side * (right - left - 0.1),
            "height": side * (bottom - top - 0.1)}
    before = shown(page, clip)
    for row in range(int(round((bottom - top) / gap)) + 1):
        y = y0 + side * (top + gap * row)
        page.mouse.move(x0 + side * left, y)
        page.mouse.down()
        page.mouse.move(x0 + side * right, y, steps=3)
        page.mouse.up()
    page.wait_for_timeout(300)
    after = shown(page, clip)
    tinted = after[..., 0] + after[..., 2] - 2 * after[..., 1] > before[..., 0] + before[..., 2] - 2 * before[..., 1]
    assert tinted.mean() > 0.5, "the brush strokes did not show on the editor"
    assert (np.abs(after - [255, 0, 255]).sum(-1) < 30).mean() < 0.5, "the brush hides the image (it must be translucent)"


def fetched(page, selector: str, n: int = 0) -> np.ndarray:
    """The n-th image under `selector` as the page got it from the server (uint8 RGB)."""
    src = page.locator(selector).nth(n).get_attribute("src")
    return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))


def test_an_inpainting_and_a_second_edit_in_a_row_in_the_browser(page_url, tmp_path):
    """A painted quarter changes perceptibly and nothing beyond the feather does; after an edit the canvas shows
    the edited image, ready for the next mask (it used to hang, blank)."""
    shots = screenshots_folder(tmp_path)
    with playwright.sync_playwright() as p:
        browser, page = open_page(p, page_url, 1400, 900)
        page.screenshot(path=str(shots / "first_view_1400x900.png"))  # what a person sees before scrolling
        page.get_by_role("button", name="Generate", exact=True).click()
        page.get_by_text("done:").wait_for(timeout=60_000)
        wait_until_settled(page, 1)
        page.screenshot(path=str(shots / "result_1400x900.png"))
        source = fetched(page, "#images img").astype(int)
        page.get_by_role("tab", name="Edit").click()
        for n, band in ((1, dict(left=0.05, right=0.45, top=0.05, bottom=0.45, gap=0.05)), (2, {})):
            paint_band(page, **band)
            page.get_by_role("button", name="Regenerate under the mask").click()
            status = page.locator("#status")
            page.wait_for_function("n => document.querySelectorAll('#history img').length === n + 1", arg=n,
                                   timeout=60_000)
            text = status.inner_text()
            assert "inpainted under the mask" in text and "painted pixels changed perceptibly" in text, text
            assert re.search(r"unpainted pixels \(beyond a \d px feather\) changed at all: (0%, )*0%", text), text
            if n == 1:  # the upper-left quarter: painted from 1/16 to 7/16 of the side, exact beyond 9/16 (the feather)
                size = len(source)
                edited = [fetched(page, "#images img", i).astype(int) for i in range(page.locator("#images img").count())]
                for image in edited:
                    assert (image[:, size * 5 // 8:] == source[:, size * 5 // 8:]).all()
                    assert (image[size * 5 // 8:] == source[size * 5 // 8:]).all()
                inside = slice(size // 16, size * 7 // 16)
                moved = [(np.abs(image - source).max(-1)[inside, inside] > PERCEPTIBLE).mean() for image in edited]
                assert max(moved) >= 0.3, moved
            page.locator("#edit-mask [data-testid='status-tracker'].hide").wait_for(state="attached", timeout=30_000)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(shots / f"edit_{n}.png"), full_page=True)
        assert page.get_by_role("button", name="Regenerate under the mask").is_enabled()
        browser.close()


def wait_for_highlight(page, position: int) -> None:
    """Wait until the history strip highlights exactly its entry `position` (from 0)."""
    page.wait_for_function("n => { const t = [...document.querySelectorAll('#history button.thumbnail-item')]; "
                           "return t.length > n && t.every((b, i) => b.classList.contains('selected') === (i === n)); }",
                           arg=position, timeout=30_000)


def test_history_restore_lock_from_it_and_open_a_downloaded_png_in_the_browser(page_url, tmp_path):
    shots = screenshots_folder(tmp_path)
    with playwright.sync_playwright() as p:
        browser, page = open_page(p, page_url, 1400, 900)
        generate = page.get_by_role("button", name="Generate", exact=True)
        generate.click()
        page.wait_for_function("() => document.querySelectorAll('#history img').length === 1", timeout=60_000)
        first_images = sources(page, "#images img")
        page.get_by_label("Class", exact=True).click()
        page.get_by_role("option", name="dog").click()
        generate.click()
        page.wait_for_function("() => document.querySelectorAll('#history img').length === 2", timeout=60_000)

        page.locator("#history img").first.click()  # restore the first result
        page.wait_for_function("srcs => { const now = [...document.querySelectorAll('#images img')].map(i => i.getAttribute('src')); "
                               "return now.length && now.join() !== '' && JSON.stringify(now) === JSON.stringify(srcs); }",
                               arg=first_images, timeout=30_000)
        wait_for_highlight(page, 0)  # the restored entry is the highlighted one
        page.get_by_role("tab", name="Lock").click()
        page.get_by_role("button", name="Keep these stages, regenerate the rest").click()
        page.wait_for_function("() => document.querySelectorAll('#history img').length === 3", timeout=60_000)
        assert "apple" in page.locator("#status").inner_text()  # locked from the restored apple, not the later dog
        wait_for_highlight(page, 2)
        page.get_by_role("button", name="Undo").click()
        wait_for_highlight(page, 1)  # the highlight follows undo and redo, not the last click
        page.get_by_role("button", name="Redo").click()
        wait_for_highlight(page, 2)
        page.screenshot(path=str(shots / "history.png"))

        link = page.locator("#downloads a[href$='.png']").first
        link.wait_for(timeout=30_000)
        name = link.get_attribute("href").rsplit("/", 1)[-1]
        assert re.fullmatch(r"apple-seed\d+\.png", name), name
        saved = tmp_path / name
        saved.write_bytes(page.request.get(link.get_attribute("href")).body())
        page.get_by_role("tab", name="Open").click()
        page.locator("#open-image input[type=file]").set_input_files(str(saved))
        page.get_by_text("opened and made again").wait_for(timeout=60_000)
        page.wait_for_function("() => document.querySelectorAll('#history img').length === 4", timeout=30_000)
        shown_src = page.locator("#images img").first.get_attribute("src")
        remade = Image.open(io.BytesIO(page.request.get(shown_src).body())).convert("RGB")
        assert remade.tobytes() == Image.open(saved).convert("RGB").tobytes()  # bit for bit

        page.get_by_role("tab", name="Lock").click()
        keep_content = page.get_by_label("Keep content too (not only structure)")
        assert keep_content.is_checked()
        page.get_by_label("Swap to class (empty: same)").click()
        page.get_by_role("option", name="dog").click()
        page.wait_for_function("() => !document.querySelector('#lock-content input').checked", timeout=10_000)

        # An image without a recipe goes to the Reference tab, which the page then shows
        page.get_by_role("tab", name="Open").click()
        page.locator("#open-image input[type=file]").set_input_files(str(EXAMPLES / "reference_heart.png"))
        page.wait_for_function("() => [...document.querySelectorAll('button[role=tab]')].some("
                               "t => t.textContent.trim() === 'Reference' && t.getAttribute('aria-selected') === 'true')",
                               timeout=30_000)
        page.locator("#reference-maps img").first.wait_for(timeout=30_000)

        # A reload keeps the history (in the browser): the current entry's images are made again, bit for bit
        captions = page.locator("#history .caption-label").all_inner_texts()
        page.reload(wait_until="load")
        page.get_by_text("tiny: 4 classes").wait_for(timeout=30_000)
        wait_until_settled(page, 4)
        wait_for_highlight(page, 3)
        assert page.locator("#history .caption-label").all_inner_texts() == captions
        page.get_by_text("history entry 4 of 4").wait_for(timeout=30_000)
        again = Image.open(io.BytesIO(page.request.get(page.locator("#images img").first.get_attribute("src")).body()))
        assert again.convert("RGB").tobytes() == remade.tobytes()
        page.screenshot(path=str(shots / "history_after_reload.png"))
        page.locator("#history img").nth(1).click()  # an older entry is made again when opened
        page.get_by_text("history entry 2 of 4").wait_for(timeout=30_000)
        browser.close()


def test_step_through_stages_with_back_and_a_class_change_then_finish_in_the_browser(page_url, tmp_path):
    shots = screenshots_folder(tmp_path)
    with playwright.sync_playwright() as p:
        browser, page = open_page(p, page_url, 1400, 1000)
        page.get_by_role("tab", name="Step").click()
        tiles, chosen = "#step-candidates .thumbnail-item", "#step-path .thumbnail-item"

        def choose(n: int, stage: int) -> None:
            """Click candidate n (from 1) and wait for the next stage's candidates."""
            page.locator(tiles).nth(n - 1).click()
            page.get_by_text(f"4 candidates for stage {stage} ").wait_for(timeout=30_000)

        page.get_by_role("button", name="Start", exact=True).click()
        page.get_by_text("4 candidates for stage 0 of 0..4, drawn as apple").wait_for(timeout=30_000)
        page.screenshot(path=str(shots / "step_stage0.png"), full_page=True)
        assert page.locator(tiles).count() == 4 and page.locator(chosen).count() == 0
        choose(2, 1)
        stage_1 = sources(page, "#step-candidates img")
        choose(3, 2)
        assert page.locator(chosen).count() == 2
        page.get_by_role("button", name="Back").click()
        page.get_by_text("back at stage 1").wait_for(timeout=30_000)
        page.wait_for_function("shown => [...document.querySelectorAll('#step-candidates img')].map(i => "
                               "i.getAttribute('src')).join() === shown", arg=",".join(stage_1), timeout=10_000)  # as they were
        assert page.locator("#step-path .caption-label").all_inner_texts() == ["stage 0: apple"]

        page.get_by_label("Class", exact=True).click()  # from the next draw on, as cat
        page.get_by_role("option", name="cat").click()
        choose(1, 2)
        page.get_by_text("drawn as cat").wait_for(timeout=10_000)
        choose(4, 3)
        page.screenshot(path=str(shots / "step_stage3.png"), full_page=True)
        assert page.locator("#step-path .caption-label").all_inner_texts() == ["stage 0: apple", "stage 1: apple",
                                                                                "stage 2: cat"]
        page.get_by_role("button", name="Finish").click()
        page.get_by_text("finished: kept the chosen stages 0..2; stages 3..4 drawn as cat").wait_for(timeout=30_000)
        wait_until_settled(page, 1)
        assert page.locator("#images img").count() == 4
        assert "stepped cat: stages 0..2 chosen" in page.locator("#history .caption-label").first.inner_text()
        page.screenshot(path=str(shots / "step_finished.png"), full_page=True)

        page.get_by_role("button", name="Step from the viewed image").click()  # its stages 0..2, then stage 3
        page.get_by_text("kept stages 0..2 of image 1").wait_for(timeout=30_000)
        assert page.locator(chosen).count() == 3 and page.locator(tiles).count() == 4
        browser.close()


def test_the_phone_layout_shows_every_image_and_the_model_name(page_url, tmp_path):
    shots = screenshots_folder(tmp_path)
    with playwright.sync_playwright() as p:
        browser, page = open_page(p, page_url, 390, 844)
        page.get_by_role("button", name="Generate", exact=True).click()
        page.get_by_text("done:").wait_for(timeout=60_000)
        page.locator("#images").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "phone_390x844.png"), full_page=True)
        width = page.evaluate("() => document.documentElement.clientWidth")
        gallery = page.locator("#images").bounding_box()
        for picture in ("#images img", "#images .caption-label"):  # every image and caption, none cut off
            boxes = [page.locator(picture).nth(i).bounding_box() for i in range(page.locator(picture).count())]
            assert len(boxes) == 4
            for box in boxes:
                assert 0 <= box["x"] and box["x"] + box["width"] <= width + 1, box
                assert gallery["y"] <= box["y"] and box["y"] + box["height"] <= gallery["y"] + gallery["height"] + 1, box
        assert page.get_by_role("tab").count() == 7  # every tab in the bar, none behind a menu
        assert page.locator("#stage-strip label").count() == 0  # no label over the stages
        for header in ("#title", "#model-status"):  # the title and the model line wrap as wholes, not a word a line
            assert page.locator(header).bounding_box()["width"] >= 200, header
        browser.close()
