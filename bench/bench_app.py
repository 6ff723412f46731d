"""How long a person waits for each web-app action: the app served on a local port, driven by gradio_client.

Usage: python bench/bench_app.py [--model DIR_OR_ID] [--repeats 2]

Each action is timed from request to final result through the HTTP API (the stage viewer and the GIF,
which the page fetches after every new result, are timed separately), beside the library's own time for
the same image (every row also prints its ratio to that); where Debian's chromium is installed, more rows
time a click on Generate in the real page until the first stage preview, the finished image and its GIF
show: once with the browser sharing the CPU with the server as an equal (the worst case), once with the
browser at idle priority (a stand-in for a visitor's browser on its own machine). Run it on a quiet
machine: other CPU jobs inflate every figure.
"""

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from gradio_client import Client, handle_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import page as served  # noqa: E402
from app import handlers  # noqa: E402
from app.models import ModelStore, default_sources  # noqa: E402
from nvg_core.benchmark import seconds_of  # noqa: E402

EXAMPLES = ROOT / "assets" / "examples"


def timed(repeats: int, action) -> float:
    """Median seconds of `repeats` calls (after one warm-up call)."""
    return seconds_of(action, repeats, statistics.median)


# Records, in the page, when the first stage preview, the finished image and its GIF appear after the click on
# Generate (the clock starts at the click event itself, not when the test driver asks for the click): a
# mutation observer, so one click gives all three times and the test side only polls once a second.
WATCH = """() => {
  window.seen = {};
  let start = null;
  document.addEventListener("click", (event) => { start = event.timeStamp; }, {capture: true, once: true});
  const mark = (name, ok) => { if (ok && start !== null && !(name in window.seen)) window.seen[name] = (performance.now() - start) / 1000; };
  new MutationObserver(() => {
    mark("first", document.querySelector("#stage-strip img"));
    mark("final", document.querySelector("#images img") && document.querySelector("#status").textContent.includes("done:"));
    mark("gif", document.querySelector("#progression img[src$='.gif']"));
  }).observe(document.body, {subtree: true, childList: true, attributes: true});
}"""


def page_waits(port: int, repeats: int, idle: bool) -> tuple[float, float, float]:
    """Median seconds from a click on Generate until the page shows the first stage preview, the finished
    image and its GIF (the images gallery is empty until the generation is done).

    idle: the browser at idle priority (bench/page.py), else sharing the cores with the server.
    """
    from playwright.sync_api import sync_playwright
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as p:
        browser = served.launch_browser(p, folder, idle)
        waits = []
        for _ in range(repeats + 1):  # the first is a warm-up
            # a new visitor each time (a fresh browser context: no history kept from the run before)
            page = browser.new_page(viewport={"width": 1280, "height": 1800})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
            page.get_by_text("classes,").wait_for(timeout=60_000)  # the model line: the model is ready
            page.evaluate(WATCH)
            page.get_by_role("button", name="Generate", exact=True).click()
            page.wait_for_function("'gif' in window.seen", polling=1000, timeout=300_000)
            seen = page.evaluate("window.seen")
            waits.append((seen["first"], seen["final"], seen["gif"]))
            page.context.close()
        browser.close()
    return tuple(statistics.median(w[i] for w in waits[1:]) for i in range(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a model folder or hub id (default: the bundled model)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    store = ModelStore(default_sources(args.model))
    pipe = store.get(store.default, wait=600)
    demo, port = served.serve(store)
    # Results stay on the server as URLs, as for a browser, which fetches only the images it shows; a
    # downloading client adds about 0.1 s per file (one new HTTPS-capable connection each).
    client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
    cls = pipe.class_names[0]
    advanced = handlers.advanced_values(pipe.default_options)  # the page's defaults for this model
    sketch_file = handle_file(str(EXAMPLES / "sketch_sky_and_sun.png"))
    sketch = {"background": sketch_file, "layers": [], "composite": sketch_file}
    reference = handle_file(str(EXAMPLES / "reference_fruit.png"))

    def generate(n):
        return lambda: client.predict(cls, 0, n, *advanced, api_name="/generate")

    options = handlers.sampling_options(pipe, *advanced)
    library = timed(args.repeats, lambda: pipe.generate([cls], seeds=[0], options=options))
    library4 = timed(args.repeats, lambda: pipe.generate([cls] * 4, seeds=[0, 1, 2, 3], options=options))
    rows = [("library: pipe.generate, 1 image, same settings (no previews)", library),
            ("library: pipe.generate, 4 images (the page's default)", library4),
            ("generate, 1 image (streamed stage by stage)", timed(args.repeats, generate(1))),
            ("generate, 4 images", timed(args.repeats, generate(4)))]
    rows.append(("lock stages 0..3 and regenerate, 4 variations",
                 timed(args.repeats, lambda: client.predict(3, True, 4, "", 1, *advanced, 1, api_name="/regenerate"))))
    rows.append(("sketch: show projected structure", timed(args.repeats, lambda: client.predict(sketch, 2, api_name="/sketch_preview"))))
    rows.append(("sketch: generate 1 image", timed(args.repeats, lambda: client.predict(
        sketch, 2, cls, 0, 1, *advanced, api_name="/sketch_generate"))))
    rows.append(("reference: upload and extract every stage's structure",
                 timed(args.repeats, lambda: client.predict(reference, api_name="/extract_structure"))))
    rows.append(("reference: generate 1 image (structure to stage 3)", timed(args.repeats, lambda: client.predict(
        reference, 3, -1, cls, 0, 1, *advanced, api_name="/reference_generate"))))
    if shutil.which("chromium"):
        for idle, where in ((False, "sharing the cores"), (True, "at idle priority")):
            first, final, gif = page_waits(port, args.repeats, idle)
            rows += [(f"in Chromium {where}: click Generate (4 images) until the first stage preview", first),
                     (f"in Chromium {where}: click Generate (4 images) until the finished images", final),
                     (f"in Chromium {where}: click Generate (4 images) until the GIF shows too", gif)]
            print(f"in Chromium {where}: finished images {final / library4:.2f}x the library's 4 images", flush=True)
    demo.close()

    *_, (_, _, state, _) = handlers.generate(pipe, None, cls, 0, 1, *advanced)
    rows.append(("after each result: stage viewer (one stage)", timed(args.repeats, lambda: handlers.show_stage(pipe, state, 4))))
    rows.append(("after each result: coarse-to-fine GIF", timed(args.repeats, lambda: handlers.progression_gif(pipe, state))))

    print(f"model {pipe.name} on {pipe.device}, {torch.get_num_threads()} threads, {advanced[2]} flow steps, "
          f"median of {args.repeats} after a warm-up")
    for name, seconds in rows:
        print(f"  {name:<66} {seconds:6.2f} s  ({seconds / library:.2f}x the library)")


if __name__ == "__main__":
    main()
