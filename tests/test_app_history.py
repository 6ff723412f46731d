"""The visitor's history: every result an entry, restore, undo / redo, branching, a memory bound; and images
opened again from the recipe they carry."""

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio")

from app import handlers, history as history_module  # noqa: E402
from app.history import History  # noqa: E402
from nvg_core import recipe  # noqa: E402


def generate(pipe, history, class_name="cat", seed=7, num_images=2):
    return list(handlers.generate(pipe, history, class_name, seed, num_images, 3.5, 2.5, 2))[-1][2]


def test_every_result_joins_the_history_and_undo_redo_restore_move_along_it(tiny_pipeline):
    first = generate(tiny_pipeline, History())
    second = generate(tiny_pipeline, first, "dog", seed=20)
    _, third, _ = handlers.regenerate(tiny_pipeline, second, 1, False, 2, "", 30, 3.5, 2.5, 2)
    assert [e.label for e in third.entries] == ["generate cat", "generate dog", "lock 0..1 (structure) of dog-seed20"]
    assert third.position == 2 and third.undo().position == 1 and third.undo().undo().undo().position == 0
    assert third.undo().redo().position == 2 and third.redo() .position == 2
    restored = handlers.restore(tiny_pipeline, third, 0)
    assert restored.current is first.current and restored.version > third.version  # the page sees a change
    assert [caption for _, caption in handlers.history_strip(third)] == \
        ["1: generate cat", "2: generate dog", "> 3: lock 0..1 (structure) of dog-seed20"]
    with pytest.raises(handlers.UserError, match="history entry 9 does not exist"):
        handlers.restore(tiny_pipeline, third, 8)


def test_locking_from_a_restored_entry_branches_from_it_and_keeps_every_entry(tiny_pipeline):
    history = generate(tiny_pipeline, generate(tiny_pipeline, History()), "dog", seed=20)
    older = handlers.restore(tiny_pipeline, history, 0)
    _, branched, status = handlers.regenerate(tiny_pipeline, older, 2, True, 1, "", 40, 3.5, 2.5, 2, index=2)
    source = older.current.result.select(1)
    kept = branched.current.result
    assert len(branched.entries) == 3 and branched.position == 2 and "cat" in status
    assert all(np.array_equal(kept.ids[s][0], source.ids[s][0]) for s in range(3))  # from the restored cat, not the dog


def test_history_memory_is_bounded_by_entries_and_bytes(tiny_pipeline, monkeypatch):
    history = generate(tiny_pipeline, History())
    per_entry = history.current.nbytes
    assert per_entry > 0
    for seed in range(history_module.MAX_ENTRIES + 3):
        history = history.add(history.current)
    assert len(history.entries) == history_module.MAX_ENTRIES and history.position == history_module.MAX_ENTRIES - 1
    monkeypatch.setattr(history_module, "MAX_BYTES", 3 * per_entry)
    assert len(history.add(history.current).entries) == 3


def test_each_visitor_starts_with_an_empty_history_of_their_own(tiny_pipeline):
    a, b = History(), History()
    assert generate(tiny_pipeline, a).entries and not a.entries and not b.entries  # adding never changes the old one


def test_the_viewed_image_downloads_as_png_with_its_recipe_at_1x_and_4x_and_a_gif(tiny_pipeline):
    history = generate(tiny_pipeline, History())
    png, large, gif = handlers.downloads(tiny_pipeline, history, 2)
    assert [png.name, large.name, gif.name] == ["cat-seed8.png", "cat-seed8-4x.png", "cat-seed8-stages.gif"]
    assert large.data.size == (4 * png.data.width,) * 2 and gif.data[:3] == b"GIF"
    for image in (png.data, large.data):
        read = recipe.read_recipe(recipe.png_bytes(image))
        assert read.seed == 8 and read.class_names[-1] == "cat"
    assert handlers.downloads(tiny_pipeline, History(), 1) == []


def test_an_opened_nvg_png_is_made_again_and_becomes_the_current_result(tiny_pipeline):
    history = generate(tiny_pipeline, History())
    saved = recipe.png_bytes(handlers.downloads(tiny_pipeline, history, 2)[0].data)
    images, opened, status, reference = handlers.open_image(tiny_pipeline, History(), saved)
    assert reference is handlers.KEEP and "opened and made again" in status and "seed 8" in status
    assert images[0][0].data.tobytes() == Image.open(io.BytesIO(saved)).convert("RGB").tobytes()
    assert opened.current.seeds == [8] and opened.current.label == "opened cat-seed8"
    _, locked, _ = handlers.regenerate(tiny_pipeline, opened, 1, True, 1, "dog", 3, 3.5, 2.5, 2)  # ready to lock
    assert len(locked.entries) == 2


def test_a_png_without_a_recipe_goes_to_the_reference_tab_and_bad_recipes_are_named(tiny_pipeline, tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (20, 20), (200, 10, 10)).save(plain)
    images, history, status, reference = handlers.open_image(tiny_pipeline, History(), str(plain))
    assert images is handlers.KEEP and history is handlers.KEEP and reference == str(plain)
    assert "carries no NVG recipe" in status and "Reference" in status
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    info.add_text(recipe.PNG_KEY, '{"format": "nvg-recipe", "version": 1}')
    broken = tmp_path / "broken.png"
    Image.new("RGB", (20, 20)).save(broken, pnginfo=info)
    with pytest.raises(handlers.UserError, match="recipe cannot be used: recipe field 'run' is missing"):
        handlers.open_image(tiny_pipeline, History(), str(broken))
    with pytest.raises(handlers.UserError, match="choose an image saved by NVG Studio"):
        handlers.open_image(tiny_pipeline, History(), None)


def test_a_reloaded_history_comes_back_from_the_browser_and_its_entries_are_made_again_bit_for_bit(tiny_pipeline):
    from app import browser_history
    history = generate(tiny_pipeline, generate(tiny_pipeline, History()), "dog", seed=20)
    _, history, _ = handlers.regenerate(tiny_pipeline, history, 1, True, 2, "cat", 30, 3.5, 2.5, 2)
    kept = json.loads(json.dumps(browser_history.stored(history, {"other": [{"label": "x"}]})))  # as the browser has it
    assert set(kept) == {"tiny", "other"} and kept["other"] == [{"label": "x"}]  # other models' entries stay
    assert len(json.dumps(kept["tiny"])) < 3 * 4_000  # recipes and thumbnails only: about 1-4 KB an entry

    reloaded = handlers.load_history(tiny_pipeline, History(), kept)
    assert [e.label for e in reloaded.entries] == [e.label for e in history.entries] and reloaded.position == 2
    assert [e.result is None for e in reloaded.entries] == [True, True, False]  # only the current one made again
    assert torch.equal(reloaded.current.result.images, history.current.result.images)
    older = handlers.restore(tiny_pipeline, reloaded, 0)  # made again when opened
    assert torch.equal(older.current.result.images, history.entries[0].result.images)
    assert handlers.step(tiny_pipeline, older, 1).current.result is not None  # redo makes it too
    assert [caption for _, caption in handlers.history_strip(reloaded)][0] == "1: generate cat"
    assert handlers.load_history(tiny_pipeline, history, kept) is handlers.KEEP  # a session keeps its own


def test_what_the_browser_sends_back_is_checked_and_bounded(tiny_pipeline, monkeypatch):
    from app import browser_history
    kept = browser_history.stored(generate(tiny_pipeline, History()), None)
    good = kept["tiny"][0]
    bomb = io.BytesIO()
    Image.new("L", (5000, 5000)).save(bomb, "PNG")
    for bad in [None, "text", {"tiny": "text"}, {"tiny": [None, 3, {"label": 5}]},
                {"tiny": [{**good, "recipes": ["{}"]}]}, {"tiny": [{**good, "seeds": [1.5]}]},
                {"tiny": [{**good, "thumbnail": "not base64!"}]},
                {"tiny": [{**good, "thumbnail": base64.b64encode(bomb.getvalue()).decode()}]}]:
        assert handlers.load_history(tiny_pipeline, History(), bad) is handlers.KEEP, bad
    assert handlers.load_history(tiny_pipeline, History(), {"tiny": [good, None]}).entries[0].label == "generate cat"
    monkeypatch.setattr(browser_history, "MAX_STORED_BYTES", 3 * len(json.dumps(good)))
    history = History()
    for seed in range(6):
        history = generate(tiny_pipeline, history, seed=seed)
    assert len(browser_history.stored(history, None)["tiny"]) == 2  # the newest entries that fit
