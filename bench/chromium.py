"""Debian's headless Chromium for the page benchmarks, sharing the two cores with the server as an equal (the
worst case) or at idle priority (a stand-in for a visitor's browser on a machine of its own)."""

import shutil
from pathlib import Path


def launch(playwright, folder: str | Path, idle: bool):
    """A Playwright browser on Debian's chromium; with idle, under SCHED_IDLE (`chrt --idle`, inherited by its
    child processes), so it only gets CPU time the server leaves unused. folder: where the wrapper goes."""
    executable = shutil.which("chromium")
    if idle:
        executable = Path(folder) / "chromium-idle"
        executable.write_text(f'#!/bin/sh\nexec chrt --idle 0 {shutil.which("chromium")} "$@"\n')
        executable.chmod(0o755)
    return playwright.chromium.launch(executable_path=executable, args=["--no-sandbox", "--headless"])
