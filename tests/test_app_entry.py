"""The app's entry point (app/server.py, run as `python app.py` or `nvg-studio`): flags and their defaults
(Spaces sets GRADIO_SERVER_NAME / GRADIO_SERVER_PORT), the About text, a clean stop."""

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from app import server as app_entry


def test_serves_on_localhost_7860_by_default(monkeypatch):
    for name in ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "NVG_MODEL"):
        monkeypatch.delenv(name, raising=False)
    args = app_entry.parse_args([])
    assert (args.host, args.port, args.share, args.model) == ("127.0.0.1", 7860, False, None)


def test_spaces_environment_and_flags_are_honoured(monkeypatch):
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7861")
    assert (app_entry.parse_args([]).host, app_entry.parse_args([]).port) == ("0.0.0.0", 7861)
    args = app_entry.parse_args(["--host", "127.0.0.2", "--port", "9000", "--model", "my/model", "--share"])
    assert (args.host, args.port, args.model, args.share) == ("127.0.0.2", 9000, "my/model", True)


def test_gpu_decorator_is_a_no_op_without_the_spaces_package():
    pytest.importorskip("gradio")
    if importlib.util.find_spec("spaces") is not None:
        pytest.skip("the spaces package is installed here")

    def action():
        return 1
    assert app_entry.gpu_decorator()(action) is action


def test_about_text_holds_the_model_card_and_data_credits():
    text = app_entry.about_text(None)
    assert "Next Visual Granularity" in text and "emoji32" in text and "Data credits" in text
    assert "library_name:" not in text and "# emoji32: the bundled NVG model" in text  # the card's metadata left out


@pytest.mark.parametrize("stop, spaces_temp", [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGTERM, True)])
def test_the_server_leaves_no_temp_files_when_stopped(tmp_path, stop, spaces_temp):
    """With TMPDIR, or with a GRADIO_TEMP_DIR that does not exist yet (as Spaces may set it)."""
    pytest.importorskip("gradio")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TMPDIR": str(tmp_path), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("GRADIO_TEMP_DIR", None)
    if spaces_temp:
        env["GRADIO_TEMP_DIR"] = str(tmp_path / "spaces" / "tmp")
    # A shell's background job inherits SIGINT ignored; a person's Ctrl-C reaches a server that is not.
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=Path(__file__).resolve().parents[1],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        assert any(tmp_path.rglob("nvg_studio_*")), "the server keeps its files in a folder of its own"
    finally:
        server.send_signal(stop)
        server.wait(60)
    left = [p for p in tmp_path.rglob("*") if p.is_file() or p.name.startswith("nvg_studio_")]
    assert not left, f"left behind: {left[:5]}"
