"""Stepping: candidates for one stage at a time, a class change on the way, finishing, stepping from a result."""

import pytest
import torch

from nvg_core import recipe
from nvg_core.images import to_pil
from nvg_core.stepping import StagePath
from nvg_core.structure import validate

SEEDS = [5, 6, 7, 8]


@pytest.fixture(scope="module")
def path_at_1(tiny_pipeline):
    """Stages 0 and 1 chosen (the third and then the second candidate) as apple."""
    first = tiny_pipeline.next_stage(None, "apple", seeds=SEEDS)
    return tiny_pipeline.next_stage(first[2], "apple", seeds=[s + 10 for s in SEEDS])[1]


def test_the_first_candidates_are_stage_0_with_the_split_it_leads_to_and_differ(tiny_pipeline):
    candidates = tiny_pipeline.next_stage(None, "apple", seeds=SEEDS)
    assert [c.stage for c in candidates] == [0] * 4 and [c.seeds for c in candidates] == [(s,) for s in SEEDS]
    for c in candidates:
        assert c.labels_SN.shape == (2, 16) and c.ids[0].shape == (1,) and c.class_ids == (0,)
        validate(c.labels_SN)
        assert c.image.size == (16, 16) and not c.complete
    assert len({(int(c.ids[0]), tuple(c.labels_SN[1].tolist())) for c in candidates}) > 1


def test_candidates_keep_the_chosen_stages_and_are_what_a_locked_run_of_their_seeds_makes(tiny_pipeline, path_at_1):
    candidates = tiny_pipeline.next_stage(path_at_1, "apple", seeds=SEEDS)
    for c in candidates:
        assert c.stage == 2 and torch.equal(c.labels_SN[:3], path_at_1.labels_SN)
        assert all(torch.equal(a, b) for a, b in zip(c.ids[:2], path_at_1.ids))
        assert c.seeds[:2] == path_at_1.seeds
    # the same stage of a whole run that keeps the path, with the same seeds and classes
    full = tiny_pipeline.generate(["apple"] * 4, seeds=SEEDS, locks=path_at_1.locks,
                                  options=tiny_pipeline.default_options)
    assert torch.equal(torch.stack([c.ids[2] for c in candidates]), full.ids[2])
    assert torch.equal(torch.stack([c.labels_SN[3] for c in candidates]), full.labels_BSN[:, 3])


def test_a_class_change_draws_the_next_stage_as_the_new_class_and_the_path_keeps_both(tiny_pipeline, path_at_1):
    as_cat = tiny_pipeline.next_stage(path_at_1, "cat", seeds=SEEDS)
    as_apple = tiny_pipeline.next_stage(path_at_1, "apple", seeds=SEEDS)
    assert as_cat[0].class_ids == (0, 0, 2)
    assert any(not torch.equal(a.ids[2], c.ids[2]) or not torch.equal(a.labels_SN, c.labels_SN)
               for a, c in zip(as_apple, as_cat))
    result = tiny_pipeline.finish(as_cat[0], num_images=2, seeds=[1, 2])
    assert result.class_labels_BS[0].tolist() == [0, 0, 2, 2, 2]
    assert result.recipes[0].class_names == ["apple", "apple", "cat", "cat", "cat"]


def test_a_finished_stepped_image_keeps_its_path_and_is_made_again_bit_for_bit_from_its_png(tiny_pipeline, path_at_1,
                                                                                              tmp_path):
    result = tiny_pipeline.finish(path_at_1, num_images=3, seeds=[21, 22, 23], class_label="dog")
    assert torch.equal(result.labels_BSN[:, :3], path_at_1.labels_SN[None].expand(3, -1, -1))
    assert all(torch.equal(result.ids[s], path_at_1.ids[s][None].expand(3, -1)) for s in range(2))
    assert result.recipes[1].action == "stepped: stages 0..1 chosen"
    images = recipe.attach(to_pil(result.images), result.recipes)
    recipe.save_png(images[1], tmp_path / "stepped.png")
    again = tiny_pipeline.reproduce(recipe.read_recipe(tmp_path / "stepped.png"))
    assert torch.equal(again.images[0], result.images[1])


def test_stepping_from_a_result_keeps_its_stages_and_goes_on_from_there(tiny_pipeline):
    result = tiny_pipeline.generate(["boat", "boat"], seeds=[3, 4])
    path = tiny_pipeline.step_from(result, index=1, stage=2)
    assert path.stage == 2 and path.seeds == (4, 4, 4) and path.class_ids == (1, 1, 1)
    assert torch.equal(path.labels_SN, result.labels_BSN[1, :4])
    assert torch.equal(path.ids[2], result.ids[2][1])
    candidates = tiny_pipeline.next_stage(path, "boat", seeds=[9])
    assert candidates[0].stage == 3 and torch.equal(candidates[0].labels_SN[:4], path.labels_SN)


def test_a_complete_path_only_finishes_and_paths_that_do_not_fit_are_refused(tiny_pipeline, path_at_1):
    path = path_at_1
    while not path.complete:
        path = tiny_pipeline.next_stage(path, "apple", seeds=[1])[0]
    assert path.stage == 4 and path.labels_SN.shape == (5, 16)
    with pytest.raises(ValueError, match="finish it"):
        tiny_pipeline.next_stage(path, "apple", seeds=[1])
    same = tiny_pipeline.finish(path, num_images=2, seeds=[1, 2])
    assert torch.equal(same.images[0], same.images[1])  # nothing is left to draw
    with pytest.raises(ValueError, match="a class and a seed for each"):
        StagePath(path_at_1.labels_SN, path_at_1.ids, (0,), (1, 2))
    with pytest.raises(ValueError, match="codes of stage 1"):
        StagePath(path_at_1.labels_SN, (path_at_1.ids[0], torch.zeros(3)), (0, 0), (1, 2))
    foreign = StagePath(path_at_1.labels_SN, (path_at_1.ids[0], torch.tensor([0, 10_000])), (0, 0), (1, 2))
    with pytest.raises(ValueError, match="codebook"):
        tiny_pipeline.next_stage(foreign, "apple", seeds=[1])
    with pytest.raises(ValueError, match="unknown class"):
        tiny_pipeline.next_stage(path_at_1, "zebra", seeds=[1])
