"""The app served on a local port and driven through gradio_client, as API users and the page do."""

import json
import math
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402

from app import handlers  # noqa: E402
from app.ui import MAX_FILE_SIZE, build_demo  # noqa: E402
from hostile_files import hostile_files  # noqa: E402
from nvg_core.sketch import project_sketch, render_in_drawing_colours  # noqa: E402
from nvg_core.structure import render_map  # noqa: E402


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
    assert len(images) == 2 and "seeds 4, 5" in status
    images, status = client.predict(1, True, 2, "dog", 9, *ADVANCED, 1, api_name="/regenerate")
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


def test_endpoint_parameter_lists_are_pinned(url):
    """Callers pass arguments by position: a parameter may only ever be added at the end."""
    advanced = ["content_guidance", "structure_guidance", "flow_steps", "top_p"]
    common = ["class_name", "seed", "num_images", *advanced]
    expected = {
        "/generate": [*common, "model"],
        "/regenerate": ["keep_stage", "keep_content", "num_variations", "class_name", "seed", "content_guidance",
                        "structure_guidance", "flow_steps", "top_p", "index", "model"],
        "/sketch_preview": ["drawing", "stage", "model", "mode"],
        "/sketch_generate": ["drawing", "stage", *common, "model", "mode"],
        "/extract_structure": ["image_path", "model"],
        "/open_image": ["file", "model"],
        "/reference_generate": ["image_path", "structure_stage", "content_stage", *common, "model"],
        "/edit_region": ["mask", "from_stage", "class_name", "num_variations", "seed", "content_guidance",
                         "structure_guidance", "flow_steps", "top_p", "index", "cover", "model"],
        "/edit_cluster": ["stage", "cluster", "action", "num_variations", "seed", "content_guidance",
                          "structure_guidance", "flow_steps", "top_p", "index", "model", "donor"],
        "/step_start": ["class_name", "seed", "num_candidates", *advanced, "model"],
        "/step_choose": ["candidate", "class_name", "num_candidates", *advanced, "model"],
        "/step_more": ["class_name", "num_candidates", *advanced, "model"],
        "/step_back": ["model"],
        "/step_finish": ["class_name", "num_images", *advanced, "model"],
        "/step_from": ["stage", "index", "class_name", "seed", "num_candidates", *advanced, "model"],
    }
    api = Client(url, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {name: [p["parameter_name"] for p in api[name]["parameters"]] for name in expected} == expected


def test_stepping_through_the_api_keeps_the_sessions_path_and_finishes_into_its_history(url):
    client = Client(url, verbose=False)
    candidates, chosen, status = client.predict("apple", 3, 2, *ADVANCED, api_name="/step_start")
    assert len(candidates) == 2 and chosen == [] and "2 candidates for stage 0" in status
    candidates, chosen, status = client.predict(2, "apple", 2, *ADVANCED, api_name="/step_choose")
    assert len(chosen) == 1 and "kept candidate 2 of stage 0" in status
    _, chosen, status = client.predict(api_name="/step_back")
    assert chosen == [] and "back at stage 0" in status
    client.predict(1, "apple", 2, *ADVANCED, api_name="/step_choose")
    images, status = client.predict("cat", 2, *ADVANCED, api_name="/step_finish")
    assert len(images) == 2 and "kept the chosen stage 0; stages 1..4 drawn as cat" in status
    images, status = client.predict(1, True, 2, "", 9, *ADVANCED, 1, api_name="/regenerate")  # from the stepped image
    assert len(images) == 2


def test_outline_mode_is_the_last_sketch_parameter(url, tmp_path):
    canvas = np.full((128, 128, 3), 255, np.uint8)
    canvas[30:34, 20:100] = 0
    canvas[90:94, 20:100] = 0
    canvas[30:94, 20:24] = 0
    canvas[30:94, 96:100] = 0  # a closed black box outline
    path = tmp_path / "outline.png"
    Image.fromarray(canvas).save(path)
    sketch = {"background": handle_file(str(path)), "layers": [], "composite": handle_file(str(path))}
    client = Client(url, verbose=False)
    _, text = client.predict(sketch, 2, None, "outline", api_name="/sketch_preview")
    assert "agreement" in text
    with pytest.raises(Exception, match="'crayon'.*not in the list of choices"):  # Gradio's own clear check
        client.predict(sketch, 2, None, "crayon", api_name="/sketch_preview")


def test_reference_endpoints(url, tmp_path):
    path = tmp_path / "ref.jpg"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
    client = Client(url, verbose=False)
    maps, text = client.predict(handle_file(str(path)), api_name="/extract_structure")
    assert len(maps) == 5 and "extracted" in text
    images, status = client.predict(handle_file(str(path)), 3, 1, "boat", 2, 2, *ADVANCED, api_name="/reference_generate")
    assert len(images) == 2 and "stages 0..3" in status


def test_a_downloaded_image_opened_through_the_api_is_made_again_bit_for_bit(url, tmp_path):
    client = Client(url, verbose=False)  # a fresh session: the recipe alone makes the image
    _, images, _ = client.predict("cat", 7, 2, *ADVANCED, api_name="/generate")
    downloaded = images[1]["image"]
    assert Image.open(downloaded).info.get("nvg_recipe")  # the file served carries its recipe
    opened, status, reference = Client(url, verbose=False).predict(handle_file(downloaded), api_name="/open_image")
    assert len(opened) == 1 and "made again" in status and "seed 8" in status
    assert (_pixels(opened[0]["image"]) == _pixels(downloaded)).all()
    plain = tmp_path / "plain.png"
    Image.open(downloaded).convert("RGB").save(plain)  # the same pixels without the recipe
    _, status, reference = Client(url, verbose=False).predict(handle_file(str(plain)), api_name="/open_image")
    assert "no NVG recipe" in status and reference is not None


def test_bad_requests_get_messages_and_the_server_keeps_working(url):
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="generate an image first"):
        client.predict(1, True, 2, "", 1, *ADVANCED, 1, api_name="/regenerate")
    _, images, status = client.predict("boat", 1, 1, *ADVANCED, api_name="/generate")
    assert len(images) == 1


def test_concurrent_sessions_downloading_every_file_get_their_own_results_and_no_errors(url):
    def one(seed):
        client = Client(url, verbose=False)  # downloads every returned file, as a browser does
        _, images, status = client.predict("dog", seed, 2, *ADVANCED, api_name="/generate")
        regenerated, regen_status = client.predict(2, True, 2, "", seed + 100, *ADVANCED, 1, api_name="/regenerate")
        return status, regen_status, Image.open(images[0]["image"]).tobytes(), len(regenerated)

    seeds = [10 * i for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, seeds + seeds[:2]))  # two sessions repeat a seed
    for seed, (status, regen_status, _, count) in zip(seeds + seeds[:2], results):
        assert f"seeds {seed}, {seed + 1}" in status and f"seeds {seed + 100}, {seed + 101}" in regen_status and count == 2
    assert results[0][2] == results[8][2] and results[1][2] == results[9][2]


def _pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    paths = {}
    for name, (data, suffix, refusal) in hostile_files().items():
        path = folder / f"{name.replace(' ', '_')}.{suffix}"
        path.write_bytes(data)
        paths[name] = (str(path), data, refusal)
    return paths


@pytest.mark.parametrize("name", sorted(hostile_files()))
def test_every_upload_is_read_as_nvg_core_reads_it_or_refused_with_the_apps_message(url, uploads, tiny_pipeline, name):
    path, data, refusal = uploads[name]
    client = Client(url, verbose=False)
    sketch = {"background": handle_file(path), "layers": [], "composite": handle_file(path)}
    calls = {"/extract_structure": (handle_file(path),), "/reference_generate": (handle_file(path), 2, -1, "cat", 1, 1, *ADVANCED),
             "/sketch_preview": (sketch, 2), "/sketch_generate": (sketch, 2, "cat", 1, 1, *ADVANCED)}
    for endpoint, arguments in calls.items():
        if refusal is not None:
            with pytest.raises(Exception, match=refusal) as error:
                client.predict(*arguments, api_name=endpoint)
            assert "upstream Gradio app has raised" not in str(error.value) and "/tmp" not in str(error.value)
            continue
        if endpoint == "/extract_structure":
            maps, _ = client.predict(*arguments, api_name=endpoint)
            expected = tiny_pipeline.extract_structure(data)
            for s, item in enumerate(maps):
                assert (_pixels(item["image"]) == np.asarray(handlers._tile(render_map(expected[s], s)))).all()
        elif endpoint == "/sketch_preview":
            try:
                projection = project_sketch(data, 2, grid=tiny_pipeline.transformer.config.grid_size)
            except ValueError as error:  # a picture, not a palette drawing: the same refusal from the app
                with pytest.raises(Exception, match=str(error).split(":")[0]):
                    client.predict(*arguments, api_name=endpoint)
                continue
            picture, _ = client.predict(*arguments, api_name=endpoint)
            drawn = render_in_drawing_colours(data, projection.labels[-1], handlers.PREVIEW_SIZE)
            assert (_pixels(picture) == drawn).all()
        elif endpoint == "/reference_generate":
            assert len(client.predict(*arguments, api_name=endpoint)[0]) == 1


@pytest.mark.parametrize("arguments, message", [
    (("cat", 1, 1, math.nan, 2.5, 2, 0.5), "content guidance must be a finite number"),
    (("cat", 1, 1, 3.5, math.inf, 2, 0.5), "structure guidance must be a finite number"),
    (("cat", 1, 1, 3.5, 2.5, math.nan, 0.5), "flow steps must be a finite number"),
    (("cat", 1e30, 1, 3.5, 2.5, 2, 0.5), "seed must be between 0 and"),
    (("cat", "abc", 1, 3.5, 2.5, 2, 0.5), "seed must be a number"),
    (("cat", 1, 1000, 3.5, 2.5, 2, 0.5), "num images must be between 1 and 8"),
])
def test_bad_numbers_sent_as_raw_json_get_the_apps_messages(url, arguments, message):
    # Python's json writes NaN and Infinity literals, as a hand-written request can; gradio_client cannot.
    body = json.dumps({"data": [*arguments, None]})
    event = httpx.post(f"{url}gradio_api/call/generate", content=body, headers={"Content-Type": "application/json"})
    stream = httpx.get(f"{url}gradio_api/call/generate/{event.json()['event_id']}", timeout=60).text
    assert "event: error" in stream and message in stream


def test_uploads_over_the_size_limit_are_refused(url, tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(b"\x89PNG" + bytes(21 * 1024 * 1024))
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="exceeds the maximum file size"):
        client.predict(handle_file(str(path)), api_name="/extract_structure")
    _, images, _ = client.predict("cat", 1, 1, *ADVANCED, api_name="/generate")
    assert len(images) == 1


def forged_png(tiny_pipeline, path, edit_run) -> str:
    """A PNG saved by the library whose recipe's run was then edited by edit_run(run)."""
    from nvg_core import recipe
    image = tiny_pipeline(["cat"], seeds=[3]).images[0]
    data = recipe.read_recipe(image).to_dict()
    edit_run(data["run"])
    image.info[recipe.PNG_KEY] = json.dumps(data)
    recipe.save_png(image, path)
    return str(path)


def test_forged_recipes_asking_for_huge_runs_are_refused_naming_the_bound_without_computing(url, tiny_pipeline, tmp_path,
                                                                                           monkeypatch):
    huge_batch = forged_png(tiny_pipeline, tmp_path / "batch.png",
                            lambda run: run.update(classes_BS=run["classes_BS"] * 5000, seeds=list(range(5000))))
    endless_flow = forged_png(tiny_pipeline, tmp_path / "flow.png", lambda run: run["options"].update(flow_steps=10_000_000))
    honest_16 = forged_png(tiny_pipeline, tmp_path / "honest.png",  # what the library makes at batch 16
                           lambda run: run.update(classes_BS=run["classes_BS"] * 16, seeds=list(range(16))))

    def computed(*args, **kwargs):
        raise AssertionError("a refused request reached the network")

    for name in ("forward_content", "forward_structure"):  # the server runs in this process
        monkeypatch.setattr(tiny_pipeline.transformer, name, computed)
    client = Client(url, verbose=False)
    for path, bound in ((huge_batch, "has 5000 images; a run has at most 1024"),
                        (endless_flow, "flow_steps must be a whole number from 1 to 1000"),
                        (honest_16, "the limit is 8 images per run.*nvg generate --recipe")):
        with pytest.raises(Exception, match=bound):
            client.submit(handle_file(path), api_name="/open_image").result(timeout=60)  # bench/bench_limits.py times it
    monkeypatch.undo()
    _, images, status = client.predict("cat", 1, 1, *ADVANCED, api_name="/generate")
    assert len(images) == 1 and "done" in status


def test_a_request_past_the_time_budget_is_stopped_with_a_message_and_the_worker_is_free(url, monkeypatch):
    from nvg_core.limits import Limits
    monkeypatch.setattr(handlers, "SERVER_LIMITS", Limits(max_images=8, max_flow_steps=50, max_seconds=1e-6))
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="stopped at stage 0 of 0..4: it passed its time budget"):
        client.predict("cat", 1, 2, *ADVANCED, api_name="/generate")
    monkeypatch.undo()
    _, images, status = client.predict("cat", 1, 2, *ADVANCED, api_name="/generate")
    assert len(images) == 2
