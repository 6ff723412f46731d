"""The README's screenshot of the page, in headless Chromium: docs/figures/app.png.

    python docs/make_screenshot.py [--out docs/figures/app.png] [--chromium /usr/bin/chromium]

Serves `python app.py` (the bundled model) on a free local port, generates four smileys from seed 42 at
1400 x 900, waits until the images, the history and the stage strip have loaded, and saves what a person
sees before scrolling. Needs Debian's chromium and the Python package playwright.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
SETTLED = ("() => document.querySelectorAll('#history img').length === 1 && "
           "[...document.querySelectorAll('#images img, #history img, #stage-strip img')]"
           ".every(i => i.complete && i.naturalWidth) && "
           "![...document.querySelectorAll('button')].some(b => b.disabled && /[.][.][.]$/.test(b.textContent.trim()))")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs/figures/app.png")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"], headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            for _ in range(120):  # the server needs a few seconds to start
                try:
                    page.goto(f"http://127.0.0.1:{port}/")
                    break
                except Exception:
                    time.sleep(1)
            page.get_by_text("32 classes").first.wait_for(timeout=120_000)
            page.get_by_label("Seed (-1: random)").first.fill("42")
            page.get_by_role("button", name="Generate", exact=True).click()
            page.get_by_text("done:").wait_for(timeout=120_000)
            page.wait_for_function(SETTLED, timeout=120_000)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            browser.close()
    finally:
        server.terminate()
        server.wait()
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
