"""The app served on a local port and driven through gradio_client, as API users and the page do."""

import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402

from app.ui import MAX_FILE_SIZE, build_demo  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def url(tiny_pipeline, tmp_path_factory):
    demo = build_demo(tiny_pipeline)
    demo.queue(default_concurrency_limit=2)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size=MAX_FILE_SIZE)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


ADVANCED = (3.5, 2.5, 2, 0.5)  # content and structure guidance, flow steps, top-p


def test_generate_streams_every_stage_and_regenerate_uses_the_session(url, tiny_pipeline):
    client = Client(url, verbose=False)
    job = client.submit("cat", 4, 2, *ADVANCED, api_name="/generate")
    updates = list(job)
    assert len(updates) >= tiny_pipeline.num_stages  # one per stage (the last may merge with the result)
    strip, images, status = job.result()
    assert len(images) == 2 and "seeds 4..5" in status
    images, status = client.predict(1, True, 2, "dog", 9, *ADVANCED, 0, api_name="/regenerate")
    assert len(images) == 2 and "dog" in status


def test_sketch_endpoints_take_the_editor_dict(url, tmp_path):
    canvas = np.full((128, 128, 3), 255, np.uint8)
    canvas[10:70, 10:60] = (230, 25, 75)
    path = tmp_path / "sketch.png"
    Image.fromarray(canvas).save(path)
    sketch = {"background": handle_file(str(path)), "layers": [handle_file(str(path))], "composite": handle_file(str(path))}
    client = Client(url, verbose=False)
    _, text = client.predict(sketch, 2, api_name="/sketch_preview")
    assert "agreement" in text
    projected, images, status = client.predict(sketch, 2, "apple", 1, 1, *ADVANCED, api_name="/sketch_generate")
    assert len(images) == 1 and "agreement" in status


def test_reference_endpoints(url, tmp_path):
    path = tmp_path / "ref.jpg"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
    client = Client(url, verbose=False)
    maps, text = client.predict(handle_file(str(path)), api_name="/extract_structure")
    assert len(maps) == 5 and "extracted" in text
    images, status = client.predict(handle_file(str(path)), 3, 1, "boat", 2, 2, *ADVANCED, api_name="/reference_generate")
    assert len(images) == 2 and "stages 0..3" in status


def test_bad_requests_get_messages_and_the_server_keeps_working(url):
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="generate an image first"):
        client.predict(1, True, 2, "", 1, *ADVANCED, 0, api_name="/regenerate")
    _, images, status = client.predict("boat", 1, 1, *ADVANCED, api_name="/generate")
    assert len(images) == 1


def test_concurrent_clients_get_their_own_results(url):
    def one(seed):
        client = Client(url, verbose=False)
        _, _, status = client.predict("dog", seed, 1, *ADVANCED, api_name="/generate")
        images, regen_status = client.predict(2, True, 1, "", seed + 100, *ADVANCED, 0, api_name="/regenerate")
        return status, regen_status

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, [10, 20, 30, 40]))
    for seed, (status, regen_status) in zip([10, 20, 30, 40], results):
        assert f"seeds {seed}..{seed}" in status and f"seeds {seed + 100}..{seed + 100}" in regen_status


def test_uploads_over_the_size_limit_are_refused(url, tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(b"\x89PNG" + bytes(21 * 1024 * 1024))
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="exceeds the maximum file size"):
        client.predict(handle_file(str(path)), api_name="/extract_structure")
    _, images, _ = client.predict("cat", 1, 1, *ADVANCED, api_name="/generate")
    assert len(images) == 1
