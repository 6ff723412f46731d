import io

import numpy as np
import pytest
import torch
from PIL import Image

gr = pytest.importorskip("gradio")

from app import handlers  # noqa: E402
from app.history import History  # noqa: E402
from app.ui import build_demo  # noqa: E402


def run_generate(pipe, **overrides):
    history = overrides.pop("history", History())
    kwargs = dict(class_name="cat", seed=7, num_images=2, content_guidance=3.5, structure_guidance=2.5, flow_steps=2)
    kwargs.update(overrides)
    return list(handlers.generate(pipe, history, **kwargs))


def pictures(images: list) -> list[Image.Image]:
    """The PIL images of a gallery value (handlers return (Download, caption) pairs)."""
    return [download.data for download, _ in images]


def test_generate_streams_one_update_per_stage_then_the_result(tiny_pipeline):
    updates = run_generate(tiny_pipeline)
    assert len(updates) == tiny_pipeline.num_stages + 1
    strip, images, history, status = updates[-1]
    assert len(strip) == tiny_pipeline.num_stages and len(images) == 2
    assert history.current.seeds == [7, 8] and "seeds 7, 8" in status
    assert [caption for _, caption in images] == ["1: seed 7", "2: seed 8"]
    assert [download.name for download, _ in images] == ["cat-seed7.png", "cat-seed8.png"]
    # while it runs, the strip grows, the status names the stages done, and the last result stays on the page
    assert len(updates[0][0]) == 1 and updates[0][1] is handlers.KEEP and updates[0][2] is handlers.KEEP
    assert "made stages 0..0 of 0..4" in updates[0][3] and updates[2][0][-1][1] == "stage 2" and "0..2" in updates[2][3]


def test_random_seed_is_chosen_and_shown(tiny_pipeline):
    *_, (_, _, history, status) = run_generate(tiny_pipeline, seed=-1, num_images=1)
    assert history.current.seeds[0] >= 0 and str(history.current.seeds[0]) in status


def test_same_seed_same_images(tiny_pipeline):
    a = pictures(run_generate(tiny_pipeline)[-1][1])
    b = pictures(run_generate(tiny_pipeline)[-1][1])
    assert [im.tobytes() for im in a] == [im.tobytes() for im in b]


def test_unknown_class_is_a_user_error(tiny_pipeline):
    with pytest.raises(handlers.UserError, match="unknown class 'unicorn'"):
        run_generate(tiny_pipeline, class_name="unicorn")
    with pytest.raises(handlers.UserError, match="choose a class first"):
        run_generate(tiny_pipeline, class_name=None)


def test_show_stage_gives_three_pictures_and_checks_its_input(tiny_pipeline):
    state = run_generate(tiny_pipeline)[-1][2]
    shown = handlers.show_stage(tiny_pipeline, state, 2, index=2)
    assert all(p.size == (handlers.PREVIEW_SIZE, handlers.PREVIEW_SIZE) for p in shown)
    assert handlers.show_stage(tiny_pipeline, History(), 2) == (None, None, None)
    with pytest.raises(handlers.UserError, match="stage must be between"):
        handlers.show_stage(tiny_pipeline, state, 9)
    # a number past a new, smaller result shows its first image
    first = handlers.show_stage(tiny_pipeline, state, 1, index=1)
    assert [p.tobytes() for p in handlers.show_stage(tiny_pipeline, state, 1, index=5)] == [p.tobytes() for p in first]


def test_regenerate_keeps_early_stages_and_can_swap_class(tiny_pipeline):
    state = run_generate(tiny_pipeline)[-1][2]
    images, new_state, status = handlers.regenerate(tiny_pipeline, state, 1, True, 3, "dog", 11, 3.5, 2.5, 2, index=2)
    source, variations = state.current.result.select(1), new_state.current.result
    assert len(images) == 3 and "dog" in status and "stages 0..1" in status
    assert (variations.labels_BSN[:, :2] == source.labels_BSN[:, :2]).all()
    assert all((v == s).all() for v, s in zip(variations.ids[:2], source.ids[:2]))
    with pytest.raises(handlers.UserError, match="generate an image first"):
        handlers.regenerate(tiny_pipeline, History(), 1, True, 2, "", 1, 3.5, 2.5, 2)
    with pytest.raises(handlers.UserError, match="kept stage must be between"):
        handlers.regenerate(tiny_pipeline, state, tiny_pipeline.num_stages - 1, True, 2, "", 1, 3.5, 2.5, 2)


def test_build_demo_names_every_action_endpoint(tiny_pipeline):
    demo = build_demo(tiny_pipeline)
    names = {dep.api_name for dep in demo.fns.values() if getattr(dep, "api_name", None)}
    assert {"generate", "regenerate", "sketch_preview", "sketch_generate", "extract_structure", "reference_generate",
            "edit_region", "edit_cluster", "step_start", "step_choose", "step_more", "step_back", "step_finish",
            "step_from"} <= names


def drawn(size=128):
    """A sketch as the editor sends it: white canvas, a red and a blue block, anti-aliased edges."""
    canvas = np.full((size, size, 3), 255, np.uint8)
    canvas[8:40, 8:30] = (230, 25, 75)
    canvas[30:60, 34:60] = (67, 99, 216)
    canvas[8:40, 30] = (240, 140, 160)  # an anti-aliased edge between red and white
    return {"background": canvas, "layers": [canvas], "composite": canvas}


def test_sketch_is_projected_and_followed(tiny_pipeline):
    picture, text = handlers.sketch_preview(tiny_pipeline, drawn(), 2)
    assert picture.size == (handlers.PREVIEW_SIZE,) * 2 and "agreement" in text
    projected, images, state, status = handlers.sketch_generate(tiny_pipeline, History(), drawn(), 2, "cat", 3, 2, 3.5, 2.5, 2)
    projection = handlers.sketch_structure(tiny_pipeline, drawn(), 2)
    assert (state.current.result.labels_BSN[:, :3].numpy() == projection.labels).all() and len(images) == 2


def test_outline_sketches_are_read_in_outline_mode(tiny_pipeline):
    import cv2
    canvas = np.full((256, 256, 3), 255, np.uint8)
    cv2.circle(canvas, (128, 128), 80, (0, 0, 0), 5, cv2.LINE_AA)
    picture, text = handlers.sketch_preview(tiny_pipeline, {"composite": canvas}, 2, mode="outline")
    assert "agreement" in text
    preview = np.asarray(picture)  # the regions in distinct colours and the circle over them, not a white square
    assert (preview.min(-1) > 240).mean() < 0.5 and len(np.unique(preview.reshape(-1, 3), axis=0)) >= 3
    with pytest.raises(handlers.UserError, match="sketch mode must be one of"):
        handlers.sketch_preview(tiny_pipeline, {"composite": canvas}, 2, mode="crayon")


@pytest.mark.parametrize("sketch, stage, message", [
    (None, 2, "empty"),
    ({"composite": np.full((32, 32, 3), 255, np.uint8)}, 2, "single region"),
    (drawn(), 1, "3 colours but stage 1 has only 2"),
    (drawn(), 5, "between 1 and 4"),
])
def test_bad_sketches_get_specific_messages(tiny_pipeline, sketch, stage, message):
    with pytest.raises(handlers.UserError, match=message):
        handlers.sketch_preview(tiny_pipeline, sketch, stage)


def test_reference_structure_is_extracted_and_reused(tiny_pipeline, tmp_path):
    path = tmp_path / "ref.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
    gallery, text = handlers.extract_structure(tiny_pipeline, str(path))
    assert len(gallery) == tiny_pipeline.num_stages and "extracted" in text
    images, state, status = handlers.reference_generate(tiny_pipeline, History(), str(path), 2, 1, "dog", 5, 2, 3.5, 2.5, 2)
    maps = tiny_pipeline.extract_structure(str(path))
    assert (state.current.result.labels_BSN[:, :3].numpy() == maps[:3]).all() and "content of stages 0..1" in status


def test_reference_uploads_with_alpha_grey_or_animation_are_adapted_and_bad_files_refused(tiny_pipeline, tmp_path):
    rgba = tmp_path / "a.png"
    Image.new("RGBA", (20, 20), (255, 0, 0, 0)).save(rgba)
    assert "transparency" in handlers.extract_structure(tiny_pipeline, str(rgba))[1]
    grey = tmp_path / "g.png"
    Image.new("L", (20, 20), 100).save(grey)
    assert "greyscale" in handlers.extract_structure(tiny_pipeline, str(grey))[1]
    gif = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    assert "first frame" in handlers.extract_structure(tiny_pipeline, str(gif))[1]
    text = tmp_path / "x.png"
    text.write_text("not an image")
    with pytest.raises(handlers.UserError, match="cannot be used: the file is not an image"):
        handlers.extract_structure(tiny_pipeline, str(text))
    assert handlers.extract_structure(tiny_pipeline, None) == ([], "")  # a cleared reference empties the maps
    with pytest.raises(handlers.UserError, match="upload a reference image"):
        handlers.reference_generate(tiny_pipeline, History(), None, 1, 0, "dog", 1, 1, 3.5, 2.5, 2)
    with pytest.raises(handlers.UserError, match="content can only be kept up to"):
        handlers.reference_generate(tiny_pipeline, History(), str(grey), 1, 2, "dog", 1, 1, 3.5, 2.5, 2)


def test_progression_gif_has_one_frame_per_stage(tiny_pipeline):
    state = run_generate(tiny_pipeline)[-1][2]
    gif_file = handlers.progression_gif(tiny_pipeline, state, 2)
    assert gif_file.name == "cat-seed8-stages.gif"
    with Image.open(io.BytesIO(gif_file.data)) as gif:
        assert gif.format == "GIF" and gif.n_frames == tiny_pipeline.num_stages
        assert gif.size == (2 * handlers.PREVIEW_SIZE, handlers.PREVIEW_SIZE)
    assert handlers.progression_gif(tiny_pipeline, History(), 1) is None


def test_results_of_another_model_are_not_regenerated(tiny_pipeline):
    from dataclasses import replace
    state = run_generate(tiny_pipeline)[-1][2]
    state = History().add(replace(state.current, model="some other model"))
    with pytest.raises(handlers.UserError, match="made by the model 'some other model'"):
        handlers.regenerate(tiny_pipeline, state, 1, True, 1, "", 1, 3.5, 2.5, 2)


@pytest.mark.parametrize("overrides, message", [
    ({"top_p": 0.0}, "top p must be between 0.05 and 1"),
    ({"flow_steps": 0}, "flow steps must be between 1 and 50"),
    ({"flow_steps": float("nan")}, "flow steps must be a finite number"),
    ({"flow_steps": 2.5}, "flow steps must be a whole number"),
    ({"content_guidance": float("nan")}, "content guidance must be a finite number"),
    ({"structure_guidance": float("inf")}, "structure guidance must be a finite number"),
    ({"content_guidance": "lots"}, "content guidance must be a number, got 'lots'"),
    ({"num_images": 0}, "num images must be between 1 and 8"),
    ({"num_images": 10**12}, "num images must be between 1 and 8"),
    ({"num_images": None}, "num images must be a number"),
    ({"seed": 1e30}, "seed must be between 0 and"),
    ({"seed": 2**64}, "seed must be between 0 and"),
    ({"seed": -5}, "seed must be between 0 and"),
    ({"seed": "abc"}, "seed must be a number, got 'abc'"),
    ({"seed": [1]}, "seed must be a number, got list"),
    ({"seed": 2**63 - 1}, r"seeds 9223372036854775807..9223372036854775808 go past"),
    ({"class_name": ["cat"]}, "the class must be a class name"),
])
def test_bad_parameters_get_messages_naming_them(tiny_pipeline, overrides, message):
    with pytest.raises(handlers.UserError, match=message):
        run_generate(tiny_pipeline, **overrides)


def test_largest_seed_and_seeds_sent_as_text_are_accepted(tiny_pipeline):
    *_, (_, _, state, _) = run_generate(tiny_pipeline, seed=2**63 - 1, num_images=1)
    assert state.current.seeds == [2**63 - 1]
    *_, (_, _, state, _) = run_generate(tiny_pipeline, seed="12", num_images="2", flow_steps=2.0)
    assert state.current.seeds == [12, 13]


@pytest.mark.parametrize("index, message", [(0, "image 0 does not exist; this result has 2 .numbered from 1"),
                                            (3, "image 3 does not exist"),
                                            (10**12, "does not exist"), (0.5, "whole number")])
def test_regenerate_checks_the_image_number(tiny_pipeline, index, message):
    state = run_generate(tiny_pipeline)[-1][2]
    with pytest.raises(handlers.UserError, match=message):
        handlers.regenerate(tiny_pipeline, state, 1, True, 1, "", 1, 3.5, 2.5, 2, index=index)


def test_runs_that_impose_stages_start_from_transfer_options_moved_as_the_sliders_are(tiny_pipeline):
    from dataclasses import replace
    S = tiny_pipeline.num_stages
    tiny_pipeline.transfer_options = replace(tiny_pipeline.default_options, content_guidance=[6.0] * S)
    try:
        at_defaults = handlers.sampling_options(tiny_pipeline, *handlers.advanced_values(tiny_pipeline.default_options),
                                                imposed=True)
        moved = handlers.sampling_options(tiny_pipeline, 4.5, 2.5, 3, imposed=True).resolved(S)  # content slider +1
        free = handlers.sampling_options(tiny_pipeline, 3.5, 2.5, 3).resolved(S)
    finally:
        tiny_pipeline.transfer_options = None  # the session's pipeline: back to none of its own
    assert at_defaults.resolved(S)["content_guidance"] == [6.0] * S
    assert np.isclose(moved["content_guidance"][-1], 7.0) and np.isclose(moved["content_guidance"][0], 6.0)
    assert np.allclose(free["content_guidance"], np.linspace(1.0, 3.5, S))  # Generate keeps the free defaults


def test_sliders_at_their_defaults_keep_the_models_schedules_and_move_only_the_later_stages(tiny_pipeline):
    from dataclasses import replace
    S = tiny_pipeline.num_stages
    boosted = [4.0, 4.0, 1.5, 2.0, 2.5]
    old = tiny_pipeline.default_options
    tiny_pipeline.default_options = replace(old, structure_guidance=boosted)
    try:
        same = handlers.sampling_options(tiny_pipeline, 3.5, 2.5, 3).resolved(S)
        moved = handlers.sampling_options(tiny_pipeline, 3.5, 4.5, 3).resolved(S)
    finally:
        tiny_pipeline.default_options = old
    assert np.allclose(same["structure_guidance"], boosted)
    assert np.allclose(same["content_guidance"], np.linspace(1.0, 3.5, S))
    assert np.allclose(moved["structure_guidance"], [4.0, 4.5, 2.5, 3.5, 4.5])


def painted_layer(path, size=handlers.EDIT_SIZE):
    """An editor layer (transparent, the left half painted), saved as the editor sends it: a PNG file."""
    layer = np.zeros((size, size, 4), np.uint8)
    layer[:, : size // 2] = (255, 0, 255, 255)
    Image.fromarray(layer).save(path)
    return {"background": None, "layers": [str(path)], "composite": None}


def test_edit_region_keeps_the_image_outside_the_mask(tiny_pipeline, tmp_path):
    *_, (_, images, state, _) = run_generate(tiny_pipeline, num_images=2)
    background = handlers.edit_background(tiny_pipeline, state, 2)
    assert background.size == (handlers.EDIT_SIZE,) * 2
    edited, new_state, status = handlers.edit_region(tiny_pipeline, state, painted_layer(tmp_path / "layer.png"), 1, "dog",
                                                     2, 8, 3.5, 2.5, 2, index=2)
    assert len(edited) == 2 and status.startswith("inpainted under the mask from stage 1 as dog; ")
    assert "painted pixels changed perceptibly (> 24/255): " in status
    assert "unpainted pixels (beyond a 1 px feather) changed at all: 0%, 0%" in status
    # fresh seeds: never the source image's own (8), which would remake it wherever the run is free
    assert new_state.current.seeds == [9, 10] and status.endswith("seeds 9, 10")
    before = np.asarray(pictures(images)[1]).astype(int)
    for image in pictures(edited):  # the tiny model's 16 px images: columns 9.. are beyond the 1 px feather of the left half
        assert (np.asarray(image)[:, 9:] == before[:, 9:]).all()
    assert new_state.current.label == "edit (mask as dog) of cat-seed8" and edited[0][0].name.startswith("cat-seed9")


def test_edit_region_at_cover_1_keeps_every_code_outside_the_mask(tiny_pipeline, tmp_path):
    *_, (_, _, state, _) = run_generate(tiny_pipeline, num_images=2)
    _, new_state, _ = handlers.edit_region(tiny_pipeline, state, painted_layer(tmp_path / "layer.png"), 1, "dog",
                                           2, 8, 3.5, 2.5, 2, index=2, cover=1)
    source, result = state.current.result.select(1), new_state.current.result
    right_N = torch.arange(16) % 4 >= 2
    assert torch.equal(result.codes_BSN[:, :, right_N], source.codes_BSN[:, :, right_N].expand(2, -1, -1))


def test_edit_region_refuses_an_empty_mask_and_bad_input(tiny_pipeline, tmp_path):
    *_, (_, _, state, _) = run_generate(tiny_pipeline, num_images=1)
    empty = {"background": None, "layers": [], "composite": None}
    with pytest.raises(handlers.UserError, match="paint over the part"):
        handlers.edit_region(tiny_pipeline, state, empty, 1, "", 1, 5, 3.5, 2.5, 2)
    mask = painted_layer(tmp_path / "layer.png")
    with pytest.raises(handlers.UserError, match="edit stage must be between 0 and 4"):
        handlers.edit_region(tiny_pipeline, state, mask, 7, "", 1, 5, 3.5, 2.5, 2)
    with pytest.raises(handlers.UserError, match="cover must be between"):
        handlers.edit_region(tiny_pipeline, state, mask, 1, "", 1, 5, 3.5, 2.5, 2, cover=1.5)
    with pytest.raises(handlers.UserError, match="generate an image first"):
        handlers.edit_region(tiny_pipeline, History(), mask, 1, "", 1, 5, 3.5, 2.5, 2)


def test_a_clicked_cluster_is_resampled_or_kept(tiny_pipeline):
    *_, (_, _, state, _) = run_generate(tiny_pipeline, num_images=1)
    source = state.current.result
    cluster = handlers.cluster_at(tiny_pipeline, state, 2, 1, x=5, y=150, size=handlers.PREVIEW_SIZE)
    assert cluster == int(source.labels_BSN[0, 2, 12])  # (5, 150) of 192 px is cell (row 3, column 0)
    in_cluster_N = source.labels_BSN[0, 2] == cluster
    for action, kept_N in (("resample this cluster", ~in_cluster_N), ("keep this cluster, resample the rest", in_cluster_N)):
        _, new_state, status = handlers.edit_cluster(tiny_pipeline, state, 2, cluster, action, 1, 3, 3.5, 2.5, 2)
        result = new_state.current.result
        assert torch.equal(result.codes_BSN[0][:, kept_N], source.codes_BSN[0][:, kept_N]) and action in status
        changed, kept = ("cluster", "other") if action.startswith("resample") else ("other", "cluster")
        assert f"{changed} pixels changed perceptibly (> 24/255): " in status
        assert f"{kept} pixels (beyond a 1 px feather) changed at all: 0%" in status
    with pytest.raises(handlers.UserError, match="cluster must be between 0 and 3"):
        handlers.edit_cluster(tiny_pipeline, state, 2, 4, "resample this cluster", 1, 3, 3.5, 2.5, 2)
    with pytest.raises(handlers.UserError, match="the action must be one of"):
        handlers.edit_cluster(tiny_pipeline, state, 2, 0, "explode", 1, 3, 3.5, 2.5, 2)


def test_the_picked_cluster_is_highlighted_in_the_stage_view(tiny_pipeline):
    *_, (_, _, state, _) = run_generate(tiny_pipeline, num_images=1)
    labels_N = state.current.result.labels_BSN[0, 2]
    plain = np.asarray(handlers.show_stage(tiny_pipeline, state, 2)[1]).astype(int)
    lit = np.asarray(handlers.show_stage(tiny_pipeline, state, 2, cluster=int(labels_N[0]))[1]).astype(int)
    cell = handlers.PREVIEW_SIZE // 4  # the 4 x 4 grid's cells, shown 48 px wide: compare their centres
    for n in range(16):
        y, x = (n // 4) * cell + cell // 2, (n % 4) * cell + cell // 2
        assert (lit[y, x] == plain[y, x]).all() == bool(labels_N[n] == labels_N[0])  # the rest is faded
    assert (np.asarray(handlers.show_stage(tiny_pipeline, state, 1, cluster=3)[1]) == np.asarray(
        handlers.show_stage(tiny_pipeline, state, 1)[1])).all()  # no cluster 3 at stage 1: nothing highlighted
    share = float((labels_N == labels_N[0]).float().mean())
    assert handlers.cluster_note(tiny_pipeline, state, 2, int(labels_N[0])) == (
        f"Picked: cluster {int(labels_N[0])} of stage 2, {share:.0%} of the image (highlighted in the clusters image below).")
    assert handlers.cluster_note(tiny_pipeline, state, 1, 3).startswith("No cluster picked: click one")
    assert handlers.cluster_note(tiny_pipeline, History(), 1, 0).startswith("Generate an image first")
    with pytest.raises(handlers.UserError, match="pick a cluster first"):
        handlers.edit_cluster(tiny_pipeline, state, 2, None, "resample this cluster", 1, 3, 3.5, 2.5, 2)


def test_a_clicked_cluster_takes_the_donor_images_code(tiny_pipeline):
    *_, (_, _, state, _) = run_generate(tiny_pipeline, num_images=2)
    source, donor = state.current.result.select(0), state.current.result.select(1)
    copy = "copy this cluster's content from the donor image"
    _, new_state, status = handlers.edit_cluster(tiny_pipeline, state, 2, 1, copy, 1, 3, 3.5, 2.5, 2)  # image 1, donor 2
    edited, in_cluster_N = new_state.current.result, source.labels_BSN[0, 2] == 1
    donor_cluster = int(torch.bincount(donor.labels_BSN[0, 2][in_cluster_N], minlength=4).argmax())
    assert int(edited.ids[2][0, 1]) == int(donor.ids[2][0, donor_cluster]) and "donor image 2" in status
    assert torch.equal(edited.codes_BSN[0][:, ~in_cluster_N], source.codes_BSN[0][:, ~in_cluster_N])
    with pytest.raises(handlers.UserError, match="the donor must be another image"):
        handlers.edit_cluster(tiny_pipeline, state, 2, 1, copy, 1, 3, 3.5, 2.5, 2, index=2, donor=2)
    with pytest.raises(handlers.UserError, match="image 5 does not exist"):
        handlers.edit_cluster(tiny_pipeline, state, 2, 1, copy, 1, 3, 3.5, 2.5, 2, donor=5)


ADVANCED_LABELS = ("Content guidance at the last stage", "Structure guidance at the last stage", "Structure flow steps",
                   "Top-p at the last stage")  # in the handlers' order


def advanced_on_the_page(demo, picked: str | None = None) -> tuple:
    """The Advanced sliders' values: as the page is built, or as it sets them when the model `picked` is chosen."""
    event = next(d for d in demo.fns.values() if d.fn is not None and d.fn.__name__ == "model_outputs")
    sliders = [next(o for o in event.outputs if str(getattr(o, "label", "")).startswith(label)) for label in ADVANCED_LABELS]
    if picked is None:
        return tuple(s.value for s in sliders)
    updates = {id(o): u for o, u in zip(event.outputs, event.fn(picked))}
    return tuple(updates[id(s)]["value"] for s in sliders)


def test_advanced_sliders_start_at_the_models_last_stage_defaults_and_follow_the_picked_model():
    from conftest import make_tiny_pipeline

    from app.models import ModelStore
    from nvg_core.sampling import SamplingOptions
    first, second = make_tiny_pipeline(), make_tiny_pipeline()
    second.default_options = SamplingOptions(content_guidance=[1.0, 2.0, 3.0, 4.0, 4.25], top_k=2, flow_steps=4,
                                             structure_guidance=[4.0, 4.0, 1.5, 1.6, 1.75], top_p=[1.0, 0.9, 0.8, 0.75, 0.7])
    store = ModelStore({"second": "b", "first": "a"}, loader={"a": first, "b": second}.get)  # "second" is the default
    assert store.get("first", wait=60) is first and store.get("second", wait=60) is second
    demo = build_demo(store)
    assert advanced_on_the_page(demo) == (4.25, 1.75, 4, 0.7) == handlers.advanced_values(second.default_options)
    assert advanced_on_the_page(demo, "first") == (3.5, 2.5, 3, 0.5) == handlers.advanced_values(first.default_options)
    assert advanced_on_the_page(demo, "second") == (4.25, 1.75, 4, 0.7)
    for pipe in (first, second):  # the sliders at their starting values sample with the model's own defaults
        assert handlers.sampling_options(pipe, *handlers.advanced_values(pipe.default_options)) == pipe.default_options


def test_the_page_starts_at_the_bundled_models_defaults():
    from app.models import ModelStore, default_sources, peek
    assert advanced_on_the_page(build_demo(ModelStore(default_sources()))) == (3.5, 2.5, 2, 0.5)
    assert handlers.advanced_values(peek(None).defaults) == (3.5, 2.5, 2, 0.5)


def test_a_viewed_image_gets_its_downloads_first_and_its_gif_made_once(tiny_pipeline):
    """A click on an image sends the view events in the order they are bound: the download list comes first,
    so a person saves the image they see, and the page's GIF is the download's (it used to be made twice)."""
    from app.models import ModelStore
    demo = build_demo(ModelStore({"tiny": "tiny"}, loader=lambda source: tiny_pipeline))
    index = next(c for c in demo.blocks.values() if getattr(c, "label", None) == "Image number (or click an image)")
    views = [d for d in demo.fns.values() if (index._id, "change") in [tuple(t) for t in d.targets]]
    assert views[0].fn.__name__ == "viewed_files"
    assert [o.elem_id for o in views[0].outputs] == ["downloads", "progression"]
    assert "progression_gif" not in [d.fn.__name__ for d in demo.fns.values() if d.fn is not None]
    state = run_generate(tiny_pipeline)[-1][2]
    files, gif = handlers.viewed_files(tiny_pipeline, state, 2)
    assert files == handlers.downloads(tiny_pipeline, state, 2) and gif is files[-1] and gif.name.endswith("-stages.gif")
    assert handlers.viewed_files(tiny_pipeline, History(), 1) == ([], None)


def test_viewer_and_gif_are_the_pipelines_pictures_at_preview_size(tiny_pipeline):
    state = run_generate(tiny_pipeline)[-1][2]
    result = state.current.result
    shown = handlers.show_stage(tiny_pipeline, state, 3, index=2)
    expected = tiny_pipeline.stage_view(result, 1, 3, size=handlers.PREVIEW_SIZE)
    assert [p.tobytes() for p in shown] == [p.tobytes() for p in expected]
    assert handlers.progression_gif(tiny_pipeline, state, 2).data == tiny_pipeline.progression_gif(result, 1, size=handlers.PREVIEW_SIZE)


def test_the_model_poll_waits_on_the_loading_model_so_crossing_picker_replies_end_on_its_error(tiny_pipeline):
    """A picker can send its input twice: one reply may already say the model failed (and reset the picker to the
    default) while the other says it is still loading (and starts the poll). Whatever order the page applies
    them in, the poll must end on the failed model's error, not on the default model the picker shows."""
    import threading

    from app.models import ModelStore
    release = threading.Event()

    def loader(source):
        if source == "tiny":
            return tiny_pipeline
        release.wait(60)
        raise OSError("no such model here")

    store = ModelStore({"tiny": "tiny", "broken": "broken"}, loader=loader)
    assert store.get("tiny", wait=60) is tiny_pipeline
    demo = build_demo(store)
    events = {d.fn.__name__: d for d in demo.fns.values() if d.fn is not None}
    pick, check = events["pick"], events["check"]
    outputs = [type(o).__name__ for o in pick.outputs]
    picker, status, timer, pending = 0, len(outputs) - 3, len(outputs) - 2, len(outputs) - 1
    assert [outputs[i] for i in (picker, status, timer, pending)] == ["Dropdown", "Markdown", "Timer", "State"]
    # the poll reads what it waits for, not the picker, and the class shown (kept where the model has it)
    assert [type(i).__name__ for i in check.inputs] == ["State", "Dropdown"]

    loading = pick.fn("broken")
    assert loading[picker]["value"] == "broken" and "still loading" in loading[status]
    assert loading[timer].active and loading[pending] == "broken"
    assert check.fn("broken") == tuple(gr.update() for _ in outputs)  # still loading: nothing changes
    release.set()
    store._threads["broken"].join(60)
    with pytest.warns(UserWarning, match="broken could not be loaded .offline, or its files are missing or broken.; "
                      "details are in the server log"):
        failed = check.fn("broken", "dog")  # the poll once the load has failed: a notice, and the default model's page
    assert failed[status].startswith("tiny: 4 classes") and "OSError" not in failed[status]
    assert failed[1]["value"] == "dog"  # the class box keeps the class the person had chosen
    assert failed[picker]["value"] == "tiny" and not failed[timer].active and failed[pending] is None
    idle = check.fn(None)  # a tick with nothing to wait for stops the poll
    assert not idle[timer].active and idle[pending] is None


def test_the_pages_half_transparent_brush_strokes_are_a_mask(tiny_pipeline, tmp_path):
    layer = np.zeros((handlers.EDIT_SIZE, handlers.EDIT_SIZE, 4), np.uint8)
    layer[:, : handlers.EDIT_SIZE // 2] = (255, 0, 255, 127)  # the page's brush: magenta at half opacity
    Image.fromarray(layer).save(tmp_path / "layer.png")
    painted = handlers._painted({"layers": [str(tmp_path / "layer.png")]})
    assert painted[:, : handlers.EDIT_SIZE // 2].all() and not painted[:, handlers.EDIT_SIZE // 2:].any()
