"""Every number and upload a stranger can send to a model-running endpoint is refused with the app's message
before anything is computed, and the server's bounds hold for every action, Open included."""

import math

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio")

from app import handlers  # noqa: E402
from app.history import History  # noqa: E402
from app.limits import DEFAULTS, SERVER_LIMITS, server_limits  # noqa: E402
from nvg_core import recipe  # noqa: E402
from nvg_core.limits import Limits  # noqa: E402

ADVANCED = dict(content_guidance=3.5, structure_guidance=2.5, flow_steps=2, top_p=0.5)
BAD_NUMBERS = [math.nan, math.inf, -math.inf, -5, 1e30, "abc", [1], {"x": 1}, True]
BAD_UPLOADS = [5, 1.5, math.nan, ["a.png"], {"x": 1}, True]


@pytest.fixture(scope="module")
def history(tiny_pipeline):
    *_, (_, _, state, _) = handlers.generate(tiny_pipeline, History(), "cat", 7, 2, **ADVANCED)
    return state


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    sketch = np.full((64, 64, 3), 255, np.uint8)
    sketch[:, :32] = (230, 25, 75)
    Image.fromarray(sketch).save(folder / "sketch.png")
    mask = np.zeros((64, 64, 4), np.uint8)
    mask[:, 32:] = (255, 0, 255, 255)
    Image.fromarray(mask).save(folder / "mask.png")
    return {"sketch": {"background": None, "layers": [], "composite": str(folder / "sketch.png")},
            "mask": {"background": None, "layers": [str(folder / "mask.png")], "composite": None},
            "reference": str(folder / "sketch.png")}


def calls(files):
    """Each model-running action: (handler, its valid arguments by name, its numeric inputs, its uploads)."""
    common = dict(class_name="cat", seed=1, num_images=1, **ADVANCED)
    return {
        "generate": (lambda p, h, **a: list(handlers.generate(p, h, **a)), common, [*common][1:], []),
        "regenerate": (handlers.regenerate, dict(keep_stage=1, keep_content=True, num_variations=1, class_name="", seed=3,
                                                 **ADVANCED, index=1), ["keep_stage", "num_variations", "seed", *ADVANCED, "index"], []),
        "edit_region": (handlers.edit_region, dict(mask=files["mask"], from_stage=2, class_name="", num_variations=1, seed=3,
                                                   **ADVANCED, index=1, cover=1.0),
                        ["from_stage", "num_variations", "seed", *ADVANCED, "index", "cover"], ["mask"]),
        "edit_cluster": (handlers.edit_cluster, dict(stage=2, cluster=0, action="resample this cluster", num_variations=1,
                                                     seed=3, **ADVANCED, index=1, donor=2),
                         ["stage", "cluster", "num_variations", "seed", *ADVANCED, "index"], []),
        "sketch_generate": (handlers.sketch_generate, dict(drawing=files["sketch"], stage=2, **common),
                            ["stage", *[*common][1:]], ["drawing"]),
        "reference_generate": (handlers.reference_generate, dict(image_path=files["reference"], structure_stage=2,
                                                                 content_stage=-1, **common),
                               ["structure_stage", "content_stage", *[*common][1:]], ["image_path"]),
        "open_image": (handlers.open_image, dict(file=files["reference"]), [], ["file"]),
    }


SWEEP = [(endpoint, kind) for endpoint in ["generate", "regenerate", "edit_region", "edit_cluster", "sketch_generate",
                                           "reference_generate", "open_image"] for kind in ("numbers", "uploads")]


@pytest.mark.parametrize("endpoint, kind", SWEEP)
def test_every_bad_number_and_upload_is_refused_with_a_message_before_any_compute(tiny_pipeline, history, files,
                                                                                  monkeypatch, endpoint, kind):
    handler, valid, numbers, uploads = calls(files)[endpoint]

    def computed(*args, **kwargs):
        raise AssertionError("a refused request reached the network")

    monkeypatch.setattr(tiny_pipeline.transformer, "forward_content", computed)
    monkeypatch.setattr(tiny_pipeline.transformer, "forward_structure", computed)
    names, bad_values = (numbers, BAD_NUMBERS) if kind == "numbers" else (uploads, BAD_UPLOADS)
    for name in names:
        for bad in bad_values:
            if name == "top_p" and bad is None:
                continue
            with pytest.raises(handlers.UserError) as refusal:
                handler(tiny_pipeline, history, **{**valid, name: bad})
            assert str(refusal.value), (endpoint, name, bad)


def test_the_valid_calls_of_the_sweep_run(tiny_pipeline, history, files):
    """The sweep's base arguments are valid: each refusal there is the bad value's."""
    for endpoint, (handler, valid, _, _) in calls(files).items():
        if endpoint != "open_image":
            assert handler(tiny_pipeline, history, **valid)


def test_the_page_and_nvg_core_share_the_servers_bounds():
    assert handlers.LIMITS["num_images"] == handlers.LIMITS["num_variations"] == (1, SERVER_LIMITS.max_images) == (1, 8)
    assert handlers.LIMITS["flow_steps"] == (1, SERVER_LIMITS.max_flow_steps) == (1, 50)
    assert SERVER_LIMITS.max_seconds == 120 and SERVER_LIMITS.memory_share == 0.5


def test_server_limits_come_from_the_environment_and_bad_values_name_the_variable():
    limits = server_limits({"NVG_MAX_IMAGES": "4", "NVG_MAX_SECONDS": "30", "NVG_MEMORY_SHARE": "0.25"})
    assert limits == Limits(max_images=4, max_flow_steps=50, max_seconds=30.0, memory_share=0.25)
    assert server_limits({}) == Limits(**{field: default for field, _, default in DEFAULTS.values()})
    with pytest.raises(ValueError, match="NVG_MAX_IMAGES must be a whole number, got 'many'"):
        server_limits({"NVG_MAX_IMAGES": "many"})
    for variable, value in (("NVG_MAX_IMAGES", "5000"), ("NVG_MAX_FLOW_STEPS", "0"), ("NVG_MAX_SECONDS", "nan"),
                            ("NVG_MEMORY_SHARE", "2")):
        with pytest.raises(ValueError, match="server limits set by NVG_MAX_IMAGES"):
            server_limits({variable: value})


def opened_png(tiny_pipeline, tmp_path, run_edit) -> str:
    """A PNG whose recipe's run is edited by run_edit(run), saved under tmp_path."""
    image = tiny_pipeline(["cat", "dog"], seeds=[1, 2]).images[0]
    data = recipe.read_recipe(image).to_dict()
    run_edit(data["run"])
    image.info[recipe.PNG_KEY] = __import__("json").dumps(data)
    path = tmp_path / "forged.png"
    recipe.save_png(image, path)
    return str(path)


def test_open_refuses_a_recipe_over_the_servers_bounds_and_says_where_it_can_be_made(tiny_pipeline, tmp_path):
    def honest_batch_of_16(run):  # what the library makes at batch 16: within nvg_core's bounds, over the server's
        run["classes_BS"], run["seeds"] = run["classes_BS"] * 8, list(range(16))

    def sixty_flow_steps(run):
        run["options"]["flow_steps"] = 60

    for edit, bound in ((honest_batch_of_16, "the limit is 8 images per run"), (sixty_flow_steps, "the limit is 50")):
        with pytest.raises(handlers.UserError, match=f"this server cannot make that image again .*{bound}.*nvg generate --recipe"):
            handlers.open_image(tiny_pipeline, History(), opened_png(tiny_pipeline, tmp_path, edit))


@pytest.mark.parametrize("edit, message", [
    (lambda run: run.update(classes_BS=run["classes_BS"] * 2500, seeds=list(range(5000))), "has 5000 images; a run has at most 1024"),
    (lambda run: run["options"].update(flow_steps=10_000_000), "flow_steps must be a whole number from 1 to 1000"),
    (lambda run: run["options"].update(content_guidance=math.nan), "content_guidance values must be finite numbers"),
    (lambda run: run["options"].update(temperature=math.inf), "temperature values must be finite numbers"),
])
def test_open_refuses_forged_recipes_naming_the_bound(tiny_pipeline, tmp_path, edit, message):
    with pytest.raises(handlers.UserError, match=message):
        handlers.open_image(tiny_pipeline, History(), opened_png(tiny_pipeline, tmp_path, edit))


def test_a_request_past_the_time_budget_stops_with_a_message_and_the_next_one_runs(tiny_pipeline, history, monkeypatch):
    monkeypatch.setattr(handlers, "SERVER_LIMITS", Limits(max_images=8, max_flow_steps=50, max_seconds=1e-6))
    with pytest.raises(TimeoutError, match="passed its time budget of 1e-06 s"):
        handlers.regenerate(tiny_pipeline, history, 1, True, 1, "", 3, **ADVANCED, index=1)
    monkeypatch.undo()
    assert handlers.regenerate(tiny_pipeline, history, 1, True, 1, "", 3, **ADVANCED, index=1)


def test_a_generation_past_the_time_budget_says_so_in_the_status_before_the_error(tiny_pipeline, monkeypatch):
    monkeypatch.setattr(handlers, "SERVER_LIMITS", Limits(max_images=8, max_flow_steps=50, max_seconds=1e-6))
    updates = handlers.generate(tiny_pipeline, History(), "cat", 1, 2, **ADVANCED)
    strip, images, state, status = next(updates)
    assert status.startswith("stopped: the run was stopped at stage 0") and images is handlers.KEEP
    with pytest.raises(TimeoutError):
        next(updates)
