"""Recipes: every saved image says what made it, and is made again from that bit for bit."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_tiny_pipeline
from nvg_core import recipe
from nvg_core.cli import main
from nvg_core.images import to_pil, to_uint8
from nvg_core.locks import Locks
from nvg_core.pipeline import NVGPipeline
from nvg_core.recipe import PARAMETERS_KEY, PNG_KEY, Recipe


@pytest.fixture(scope="module")
def run(tiny_pipeline):
    return tiny_pipeline.generate(["apple", "cat", "dog"], seeds=[4, 5, 6])


@pytest.fixture(scope="module")
def model_dir(tiny_pipeline, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    tiny_pipeline.save_pretrained(folder)
    return folder


def left_half_mask(size=16):
    mask = np.zeros((size, size), np.uint8)
    mask[:, : size // 2] = 255
    return mask


def saved_and_read(image, path):
    recipe.save_png(image, path)
    return recipe.read_recipe(path)


def assert_same_image(again, result, index):
    assert np.array_equal(to_uint8(again.images), to_uint8(result.images[index:index + 1]))
    assert torch.equal(again.labels_BSN, result.labels_BSN[index:index + 1])
    assert all(torch.equal(a, b[index:index + 1]) for a, b in zip(again.ids, result.ids))


def test_a_recipe_survives_its_json(tiny_pipeline, run):
    edited = tiny_pipeline.regenerate(run, from_stage=2, mask=left_half_mask(), seeds=[1], index=2)
    for original in (run.recipes[1], edited.recipes[0]):
        text = original.to_json()
        assert Recipe.from_json(text) == original and Recipe.from_json(text).to_json() == text
    assert edited.recipes[0].source == run.recipes[2]


@pytest.mark.parametrize("kind", ["prefix", "structure only", "mask", "clusters", "donor", "batch of two"])
def test_locks_survive_their_encoding(run, kind):
    one, other = run.select(0), run.select(1)
    locks = {"prefix": lambda: Locks.from_result(one, 2),
             "structure only": lambda: Locks.from_result(one, 3, content_up_to=-1),
             "mask": lambda: Locks.from_mask(one, left_half_mask(), 1),
             "clusters": lambda: Locks.from_clusters(one, 2, [1], invert=True),
             "donor": lambda: Locks.from_donor(one, other, 2, 3),
             "batch of two": lambda: Locks.from_result(run.select([0, 2]), 4)}[kind]()
    decoded = recipe.decode_locks(json.loads(json.dumps(recipe.encode_locks(locks))))
    assert torch.equal(decoded.labels_BSN, locks.labels_BSN) and len(decoded.ids) == len(locks.ids)
    assert all(torch.equal(a, b) for a, b in zip(decoded.ids, locks.ids))
    assert (decoded.free_BSN is None) == (locks.free_BSN is None)
    assert locks.free_BSN is None or torch.equal(decoded.free_BSN, locks.free_BSN)


def test_a_saved_png_reproduces_bit_for_bit(tiny_pipeline, run, tmp_path):
    images = recipe.attach(to_pil(run.images), run.recipes)
    read = saved_and_read(images[1], tmp_path / "cat.png")
    assert read == run.recipes[1] and (read.seed, read.index, read.class_names) == (5, 1, ["cat"] * 5)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "cat.png")), to_uint8(run.images)[1])
    again = tiny_pipeline.reproduce(read)
    assert_same_image(again, run, 1)
    assert again.recipes == [read]  # it can be saved, locked and edited again as the same image


def test_a_masked_edit_reproduces_bit_for_bit_with_its_blend(tiny_pipeline, run, tmp_path):
    edited = tiny_pipeline.regenerate(run, from_stage=2, mask=left_half_mask(), num_variations=2, seeds=[8, 9], index=0)
    made = edited.recipes[1]
    assert made.blend is not None and made.action == "edit under a mask from stage 2" and made.source == run.recipes[0]
    read = saved_and_read(recipe.attach(to_pil(edited.images), edited.recipes)[1], tmp_path / "edit.png")
    again = tiny_pipeline.reproduce(read)
    assert_same_image(again, edited, 1)
    unblended = tiny_pipeline.generate(**recipe.run_arguments(read, tiny_pipeline.num_stages)).select(1)
    assert not np.array_equal(to_uint8(unblended.images), to_uint8(again.images))  # the blend was re-applied


def test_a_version_1_masked_edit_blends_outside_its_freed_cells(tiny_pipeline, run):
    """Version 1 stored the cells freed at the last stage, not the painted region: still read and re-applied."""
    locks = Locks.from_mask(run.select(0), left_half_mask(), from_stage=2, cover=1.0)
    edited = tiny_pipeline.regenerate(run, from_stage=2, locks=locks, seeds=[8], index=0)
    data = edited.recipes[0].to_dict()
    region_HW = recipe.unpack_array(data["blend"].pop("region_HW"), "blend.region_HW")
    free_N = locks.free_BSN[0, -1].numpy()
    assert np.array_equal(region_HW, tiny_pipeline.cells_to_pixels(free_N))  # the same region, said in cells
    data["blend"]["free_N"], data["version"] = recipe.pack_array(free_N), 1
    assert_same_image(tiny_pipeline.reproduce(Recipe.from_dict(data)), edited, 0)


def test_a_class_swap_reproduces_and_names_both_classes(tiny_pipeline, run, tmp_path):
    swapped = tiny_pipeline.regenerate(run, from_stage=3, class_labels="boat", seeds=[2], index=1)
    made = swapped.recipes[0]
    assert made.class_names == ["cat"] * 3 + ["boat"] * 2
    assert made.parameters().startswith("class cat (stages 0-2), boat (3-4); seed 2; model tiny (weights ")
    assert made.action == "regenerate from stage 3 (structure and content kept) as boat"
    image = recipe.attach(to_pil(swapped.images), swapped.recipes)[0]
    assert_same_image(tiny_pipeline.reproduce(saved_and_read(image, tmp_path / "swap.png")), swapped, 0)


def test_an_edit_of_a_foreign_image_keeps_its_pixels_in_the_recipe(tiny_pipeline):
    picture = Image.fromarray(np.random.default_rng(2).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    source = tiny_pipeline.from_image(picture, "dog")
    assert source.recipes is None
    edited = tiny_pipeline.regenerate(source, from_stage=1, mask=left_half_mask(), seeds=[3])
    made = edited.recipes[0]
    assert made.source is None and made.blend is not None
    assert_same_image(tiny_pipeline.reproduce(Recipe.from_json(made.to_json())), edited, 0)


def test_called_pipelines_put_the_recipe_in_the_images(tiny_pipeline, tmp_path):
    image = tiny_pipeline(["boat", "dog"], seeds=[1, 2]).images[1]
    assert {PNG_KEY, PARAMETERS_KEY} <= image.info.keys() and "\n" not in image.info[PARAMETERS_KEY]
    recipe.save_png(image, tmp_path / "x.png")
    stored = Image.open(tmp_path / "x.png")
    assert stored.text[PARAMETERS_KEY] == image.info[PARAMETERS_KEY]
    assert recipe.read_recipe(recipe.png_bytes(image)) == recipe.read_recipe(image) == recipe.read_recipe(stored)
    assert "image 2 of 2 in its run" in image.info[PARAMETERS_KEY]  # numbered from 1 for people


def test_a_fresh_shared_generator_is_recorded_and_a_used_one_is_not(tiny_pipeline):
    shared = tiny_pipeline(["cat", "apple"], generator=torch.Generator().manual_seed(11), output_type="pt").result
    made = shared.recipes[1]
    assert made.seed == 11 and made.run["shared_seed"] == 11 and "one generator for the run" in made.parameters()
    assert_same_image(tiny_pipeline.reproduce(made), shared, 1)
    per_image = tiny_pipeline.generate(["cat"], generator=[torch.Generator().manual_seed(5)])
    assert per_image.recipes[0].run["seeds"] == [5]
    used = torch.Generator().manual_seed(11)
    torch.rand(1, generator=used)
    unknown = tiny_pipeline.generate(["cat"], generator=used).recipes[0]
    assert unknown.seed is None and "cannot be made again" in unknown.parameters()
    with pytest.raises(ValueError, match="seed is unknown"):
        tiny_pipeline.reproduce(unknown)


def test_a_png_without_a_recipe_has_none(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    assert recipe.read_recipe(tmp_path / "plain.png") is None
    with pytest.raises(ValueError, match="not an image"):
        recipe.read_recipe(b"not a picture")


def broken(made: Recipe, change) -> str:
    data = made.to_dict()
    change(data)
    return json.dumps(data)


@pytest.mark.parametrize("change, field", [
    (lambda d: d.update(format="something-else"), "'format'"),
    (lambda d: d.update(version=3), "'version' is 3: it was written by a newer nvg_core"),
    (lambda d: d["run"].pop("seeds"), "'run.seeds' is missing"),
    (lambda d: d["run"].update(classes_BS="cat"), "'run.classes_BS'"),
    (lambda d: d["run"]["options"].update(flow_steps=0), "'run.options'"),
    (lambda d: d.update(index=7), "'index'"),
    (lambda d: d.update(seed=-1), "'seed'"),
    (lambda d: d.pop("model"), "'model' is missing"),
])
def test_a_bad_recipe_names_the_field(run, change, field):
    with pytest.raises(ValueError, match=f"recipe field {field}"):
        Recipe.from_json(broken(run.recipes[0], change))


def test_bad_json_and_bad_stored_arrays_are_refused(tiny_pipeline, run, tmp_path):
    with pytest.raises(ValueError, match="not JSON"):
        Recipe.from_json("{nvg")
    with pytest.raises(ValueError, match="must be a JSON object"):
        Recipe.from_json("[1, 2]")
    edited = tiny_pipeline.regenerate(run, from_stage=2, mask=left_half_mask(), seeds=[1])
    damaged = Recipe.from_json(broken(edited.recipes[0], lambda d: d["run"]["locks"]["labels_BN"].update(data="AAAA")))
    with pytest.raises(ValueError, match="recipe field 'run.locks.labels_BN' is not a stored array"):
        tiny_pipeline.reproduce(damaged)
    nested = broken(edited.recipes[0], lambda d: d["source"].update(action=3))
    with pytest.raises(ValueError, match="recipe field 'source.action'"):
        Recipe.from_json(nested)
    image = Image.new("RGB", (8, 8))
    image.info.update({PNG_KEY: "{}", PARAMETERS_KEY: "x"})
    with pytest.raises(ValueError, match="'format' is missing"):
        recipe.read_recipe(recipe.png_bytes(image))


def test_another_model_is_refused_naming_both(run, model_dir):
    other = make_tiny_pipeline(seed=1)
    made, weights = run.recipes[0], run.recipes[0].model["weights"]
    with pytest.raises(ValueError, match=f"made with the model tiny \\(weights {weights}\\); the loaded model is "
                                         f"tiny \\(weights {recipe.weights_hash(other)}\\)"):
        other.reproduce(made)
    assert recipe.weights_hash(other) != weights
    loaded = NVGPipeline.from_recipe(made, model_dir, device="cpu")
    assert_same_image(loaded.reproduce(made), run, 0)


def test_provenance_keeps_the_last_few_steps(tiny_pipeline, run):
    result = run
    for step in range(recipe.PROVENANCE_DEPTH + 2):
        result = tiny_pipeline.regenerate(result, from_stage=4, seeds=[step])
    depth, made = 0, result.recipes[0]
    while made.source is not None:
        depth, made = depth + 1, made.source
    assert depth == recipe.PROVENANCE_DEPTH


def test_the_cli_makes_an_image_again_from_its_png(model_dir, tmp_path, capsys):
    first, again = tmp_path / "first.png", tmp_path / "again.png"
    assert main(["generate", "--model", str(model_dir), "--class", "cat", "--seed", "3", "--num-images", "2",
                 "--out", str(first)]) == 0
    assert main(["generate", "--model", str(model_dir), "--recipe", str(tmp_path / "first_1.png"), "--out", str(again)]) == 0
    assert "made again from the recipe" in capsys.readouterr().out
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(tmp_path / "first_1.png")))
    assert recipe.read_recipe(again) == recipe.read_recipe(tmp_path / "first_1.png")
    assert main(["generate", "--model", str(model_dir), "--out", str(tmp_path / "no.png")]) == 2
    assert "--class is required" in capsys.readouterr().err
    assert main(["generate", "--model", str(model_dir), "--recipe", str(again), "--class", "cat",
                 "--out", str(tmp_path / "no.png")]) == 2
    assert "leave out --class" in capsys.readouterr().err
    Image.new("RGB", (16, 16)).save(tmp_path / "plain.png")
    assert main(["generate", "--model", str(model_dir), "--recipe", str(tmp_path / "plain.png"), "--out", str(again)]) == 2
    assert "carries no nvg recipe" in capsys.readouterr().err and not (tmp_path / "no.png").exists()


def test_cli_edits_of_a_foreign_image_carry_a_recipe_with_its_pixels(model_dir, tmp_path):
    picture = np.random.default_rng(5).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(picture).save(tmp_path / "image.png")
    Image.fromarray(left_half_mask()).save(tmp_path / "mask.png")
    edited, again = tmp_path / "edited.png", tmp_path / "again.png"
    assert main(["edit", "--model", str(model_dir), "--image", str(tmp_path / "image.png"), "--mask",
                 str(tmp_path / "mask.png"), "--from-stage", "2", "--class", "dog", "--out", str(edited)]) == 0
    made = recipe.read_recipe(edited)
    assert made.source is None and made.blend["source_png"] and made.action == "edit under a mask from stage 2"
    assert main(["generate", "--model", str(model_dir), "--recipe", str(edited), "--out", str(again)]) == 0
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(edited)))
