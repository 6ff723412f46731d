"""The page benchmarks' setup: the app served on a free local port, and Debian's headless Chromium sharing the
two cores with the server as an equal (the worst case) or at idle priority (a stand-in for a visitor's
browser on a machine of its own)."""

import shutil
import socket
from pathlib import Path

from app.ui import CSS, MAX_FILE_SIZE, build_demo


def serve(store):
    """(demo, port): the page over a ModelStore, one request at a time, as app/server.py serves it; demo.close()
    stops it."""
    demo = build_demo(store)
    demo.queue(default_concurrency_limit=1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size=MAX_FILE_SIZE, css=CSS)
    return demo, port


def launch_browser(playwright, folder: str | Path, idle: bool):
    """A Playwright browser on Debian's chromium; with idle, under SCHED_IDLE (`chrt --idle`, inherited by its
    child processes), so it only gets CPU time the server leaves unused. folder: where the wrapper goes."""
    executable = shutil.which("chromium")
    if idle:
        executable = Path(folder) / "chromium-idle"
        executable.write_text(f'#!/bin/sh\nexec chrt --idle 0 {shutil.which("chromium")} "$@"\n')
        executable.chmod(0o755)
    return playwright.chromium.launch(executable_path=executable, args=["--no-sandbox", "--headless"])
