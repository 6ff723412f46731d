"""How long a person waits while stepping through an image's stages: per stage, and for a whole path.

Usage: python bench/bench_step.py [--model DIR_OR_ID] [--repeats 2] [--candidates 4]

Library rows: pipe.next_stage for each stage (the candidates' compute and their previews), pipe.finish,
and pipe.generate of as many images, for scale. Page rows (where Debian's chromium is installed): the app
served on a local port, a fresh visitor each repeat, the Seed box at 0; the clock starts at the click event
itself and stops once the status says the new stage and every new candidate image has loaded (a mutation
observer in the page, no polling). A path is Start (stage 0's candidates), a click on a candidate for each
next stage (8 for a 16x16 grid, which shows the last stage's candidates) and Finish (it keeps stages 0..7
and draws the last for 4 images); its waits are summed and compared with a click on Generate (4 images)
until its images show. Once with the browser sharing the cores with the server, once at idle priority
(bench/page.py). Medians over the repeats, after a warm-up. Run it on a quiet machine.
"""

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import page as served  # noqa: E402
from app import handlers  # noqa: E402
from app.models import ModelStore, default_sources  # noqa: E402
from nvg_core.benchmark import seconds_of  # noqa: E402

# window.arm(text, selector, count) before a click: window.mark becomes the seconds from the click until the
# status contains `text` and `count` images under `selector`, other than those shown when armed, have loaded.
WATCH = """() => {
  let start = null, expect = null, before = null;
  const sources = (selector) => [...document.querySelectorAll(selector)].map(i => i.src).join();
  window.arm = (text, selector, count) => { expect = [text, selector, count]; before = sources(selector); window.mark = null; start = null; };
  document.addEventListener('click', (event) => { if (expect && start === null) start = event.timeStamp; }, {capture: true});
  const check = () => {
    if (!expect || start === null || window.mark !== null) return;
    const [text, selector, count] = expect;
    const images = [...document.querySelectorAll(selector)];
    if (document.querySelector('#status').textContent.includes(text) && images.length === count &&
        sources(selector) !== before && images.every(i => i.complete && i.naturalWidth))
      window.mark = (performance.now() - start) / 1000;
  };
  new MutationObserver(check).observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
  document.addEventListener('load', check, true);
}"""


def waited(page, click, text: str, selector: str, count: int) -> float:
    page.evaluate("([t, s, c]) => window.arm(t, s, c)", [text, selector, count])
    click()
    page.wait_for_function("window.mark !== null", polling=200, timeout=300_000)
    return page.evaluate("window.mark")


def page_waits(port: int, repeats: int, idle: bool, num_stages: int, candidates: int) -> tuple[list[float], float, float]:
    """(per stage: click to its candidates shown; Finish: click to its images shown; Generate: click to its
    images shown), medians of `repeats` fresh visitors after a warm-up one."""
    from playwright.sync_api import sync_playwright
    stages, finishes, generates = [], [], []
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as p:
        browser = served.launch_browser(p, folder, idle)
        for _ in range(repeats + 1):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
            page.get_by_text("classes,").wait_for(timeout=60_000)  # the model line: the model is ready
            page.evaluate(WATCH)
            page.get_by_label("Seed (-1: random)").fill("0")
            page.get_by_role("tab", name="Step").click()
            tiles = "#step-candidates img"
            waits = [waited(page, page.get_by_role("button", name="Start", exact=True).click,
                            "candidates for stage 0", tiles, candidates)]
            for stage in range(1, num_stages):
                waits.append(waited(page, page.locator("#step-candidates .thumbnail-item").nth(stage % candidates).click,
                                    f"candidates for stage {stage} ", tiles, candidates))
            finish = waited(page, page.get_by_role("button", name="Finish").click, "finished:", "#images img", 4)
            page.get_by_role("tab", name="Generate").click()
            generate = waited(page, page.get_by_role("button", name="Generate", exact=True).click, "done:", "#images img", 4)
            stages.append(waits)
            finishes.append(finish)
            generates.append(generate)
            page.context.close()
        browser.close()
    return ([statistics.median(w[s] for w in stages[1:]) for s in range(num_stages)],
            statistics.median(finishes[1:]), statistics.median(generates[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a model folder or hub id (default: the bundled model)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=4)
    args = parser.parse_args()

    store = ModelStore(default_sources(args.model))
    pipe = store.get(store.default, wait=600)
    cls, S, n = pipe.class_names[0], pipe.num_stages, args.candidates
    options = handlers.sampling_options(pipe, *handlers.advanced_values(pipe.default_options))

    def timed(action) -> float:
        return seconds_of(action, args.repeats, statistics.median)

    paths = [None]  # paths[s]: stages 0..s-1 chosen (the first candidate each time)
    for stage in range(S - 1):
        paths.append(pipe.next_stage(paths[-1], cls, seeds=list(range(n)), options=options)[0])
    library = [timed(lambda: pipe.next_stage(paths[s], cls, seeds=list(range(n)), options=options)) for s in range(S)]
    early = timed(lambda: pipe.finish(paths[1], seeds=[0, 1, 2, 3], options=options))
    finish = timed(lambda: pipe.finish(paths[S - 1], seeds=[0, 1, 2, 3], options=options))
    generate = timed(lambda: pipe.generate([cls] * 4, seeds=[0, 1, 2, 3], options=options))
    print(f"model {pipe.name} on {pipe.device}, {torch.get_num_threads()} threads, {options.flow_steps} flow steps, "
          f"{n} candidates, median of {args.repeats} after a warm-up")
    print(f"library: pipe.generate, 4 images {generate:.2f} s; pipe.finish, 4 images, after stage 0 {early:.2f} s, "
          f"after stage {S - 2} (the last but one, as the page's path) {finish:.2f} s")
    print("library: pipe.next_stage, s per stage: " + ", ".join(f"{s}: {t:.2f}" for s, t in enumerate(library)))
    print(f"library: a whole path (Start, {S - 1} choices, Finish) {sum(library) + finish:.2f} s = "
          f"{(sum(library) + finish) / generate:.2f}x one generation")

    if not shutil.which("chromium"):
        return
    demo, port = served.serve(store)
    try:
        for idle, where in ((False, "sharing the cores"), (True, "at idle priority")):
            stages, page_finish, page_generate = page_waits(port, args.repeats, idle, S, n)
            path = sum(stages) + page_finish
            print(f"page, browser {where}: click to {n} candidates shown, s per stage: "
                  + ", ".join(f"{s}: {t:.2f}" for s, t in enumerate(stages)) + f" (slowest {max(stages):.2f})")
            print(f"page, browser {where}: Finish {page_finish:.2f} s; Generate (4 images) {page_generate:.2f} s; "
                  f"a whole path waits {path:.2f} s = {path / page_generate:.2f}x one generation")
    finally:
        demo.close()


if __name__ == "__main__":
    main()
