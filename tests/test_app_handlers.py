import pytest

pytest.importorskip("gradio")

from app import handlers  # noqa: E402
from app.ui import build_demo  # noqa: E402


def run_generate(pipe, **overrides):
    kwargs = dict(class_name="cat", seed=7, num_images=2, content_guidance=3.5, structure_guidance=2.5, flow_steps=2)
    kwargs.update(overrides)
    return list(handlers.generate(pipe, **kwargs))


def test_generate_streams_one_update_per_stage_then_the_result(tiny_pipeline):
    updates = run_generate(tiny_pipeline)
    assert len(updates) == tiny_pipeline.num_stages + 1
    strip, images, state, status = updates[-1]
    assert len(strip) == 2 * tiny_pipeline.num_stages and len(images) == 2
    assert state["seeds"] == [7, 8] and "seeds 7..8" in status
    assert len(updates[0][0]) == 2 and updates[0][2] == {}


def test_random_seed_is_chosen_and_shown(tiny_pipeline):
    *_, (_, _, state, status) = run_generate(tiny_pipeline, seed=-1, num_images=1)
    assert state["seeds"][0] >= 0 and str(state["seeds"][0]) in status


def test_same_seed_same_images(tiny_pipeline):
    a = run_generate(tiny_pipeline)[-1][1]
    b = run_generate(tiny_pipeline)[-1][1]
    assert [im.tobytes() for im in a] == [im.tobytes() for im in b]


def test_unknown_class_is_a_user_error(tiny_pipeline):
    with pytest.raises(handlers.UserError, match="unknown class 'unicorn'"):
        run_generate(tiny_pipeline, class_name="unicorn")


def test_show_stage_gives_three_pictures_and_checks_its_input(tiny_pipeline):
    state = run_generate(tiny_pipeline)[-1][2]
    pictures = handlers.show_stage(tiny_pipeline, state, 2, index=1)
    assert all(p.size == (handlers.PREVIEW_SIZE, handlers.PREVIEW_SIZE) for p in pictures)
    assert handlers.show_stage(tiny_pipeline, {}, 2) == (None, None, None)
    with pytest.raises(handlers.UserError, match="stage must be between"):
        handlers.show_stage(tiny_pipeline, state, 9)
    with pytest.raises(handlers.UserError, match="image 5 does not exist"):
        handlers.show_stage(tiny_pipeline, state, 1, index=5)


def test_regenerate_keeps_early_stages_and_can_swap_class(tiny_pipeline):
    state = run_generate(tiny_pipeline)[-1][2]
    images, new_state, status = handlers.regenerate(tiny_pipeline, state, 1, True, 3, "dog", 11, 3.5, 2.5, 2, index=1)
    source, variations = state["result"].select(1), new_state["result"]
    assert len(images) == 3 and "dog" in status and "stages 0..1" in status
    assert (variations.labels_BSN[:, :2] == source.labels_BSN[:, :2]).all()
    assert all((v == s).all() for v, s in zip(variations.ids[:2], source.ids[:2]))
    with pytest.raises(handlers.UserError, match="generate an image first"):
        handlers.regenerate(tiny_pipeline, {}, 1, True, 2, "", 1, 3.5, 2.5, 2)
    with pytest.raises(handlers.UserError, match="kept stage must be between"):
        handlers.regenerate(tiny_pipeline, state, tiny_pipeline.num_stages - 1, True, 2, "", 1, 3.5, 2.5, 2)


def test_build_demo_names_its_api_endpoints(tiny_pipeline):
    demo = build_demo(tiny_pipeline)
    names = {dep.api_name for dep in demo.fns.values() if getattr(dep, "api_name", None)}
    assert {"generate", "regenerate"} <= names
