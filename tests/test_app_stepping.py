"""The Step tab's handlers: Start, choose, More, Back, a class change, Finish, and stepping from a history entry."""

import numpy as np
import pytest

from app import handlers, stepping
from conftest import make_tiny_pipeline

ADVANCED = (3.0, 2.0, 3, 0.9)  # content guidance, structure guidance, flow steps, top-p


def pixels(tiles):
    return [np.asarray(tile) for tile, _ in tiles]


def test_choosing_stage_by_stage_with_back_more_and_a_class_change_then_finishing(tiny_pipeline):
    stepper, candidates, chosen, status = stepping.start(tiny_pipeline, "apple", 7, 4, *ADVANCED)
    assert len(candidates) == 4 and chosen == [] and "4 candidates for stage 0 of 0..4, drawn as apple" in status
    assert [caption for _, caption in candidates] == ["1: seed 7", "2: seed 8", "3: seed 9", "4: seed 10"]
    assert candidates[0][0].size == (16, 32)  # the split over the canvas, at the image size
    stepper, at_1, chosen, status = stepping.choose(tiny_pipeline, stepper, 3, "apple", 4, *ADVANCED)
    assert "kept candidate 3 of stage 0" in status and "stage 1" in status
    assert [caption for _, caption in chosen] == ["stage 0: apple"]
    assert np.array_equal(np.asarray(chosen[0][0]), np.asarray(candidates[2][0]))
    stepper, at_2, chosen, status = stepping.choose(tiny_pipeline, stepper, 1, "cat", 4, *ADVANCED)
    assert "drawn as cat" in status and stepper.path.class_ids == (0, 0)
    assert [caption for _, caption in chosen] == ["stage 0: apple", "stage 1: apple"]
    before_more = stepper
    stepper, others, _, status = stepping.more(tiny_pipeline, stepper, "cat", 4, *ADVANCED)
    assert status.startswith("new 4 candidates for stage 2")
    assert [c.seeds[-1] for c in stepper.levels[-1].candidates] == [19, 20, 21, 22]  # after 7..10, 11..14, 15..18
    stepper, back_at_1, chosen, status = stepping.back(tiny_pipeline, stepper)
    assert "back at stage 1" in status and [caption for _, caption in chosen] == ["stage 0: apple"]
    assert all(np.array_equal(a, b) for a, b in zip(pixels(back_at_1), pixels(at_1)))  # as they were
    stepper, _, _, _ = stepping.choose(tiny_pipeline, stepper, 2, "cat", 4, *ADVANCED)
    assert stepper.path.class_ids == (0, 0) and stepper.levels[-1].candidates[0].class_ids == (0, 0, 2)
    assert len(before_more.levels) == len(stepper.levels)
    images, history, status, stepper = stepping.finish(tiny_pipeline, None, stepper, "cat", 3, *ADVANCED)
    assert len(images) == 3 and history.current.label == "stepped cat: stages 0..1 chosen"
    assert "kept the chosen stages 0..1; stages 2..4 drawn as cat" in status
    assert history.current.result.class_labels_BS[0].tolist() == [0, 0, 2, 2, 2]
    assert history.current.result.recipes[0].action == "stepped: stages 0..1 chosen"


def test_the_same_seed_and_clicks_draw_the_same_candidates(tiny_pipeline):
    first = stepping.start(tiny_pipeline, "boat", 3, 2, *ADVANCED)
    second = stepping.start(tiny_pipeline, "boat", 3, 2, *ADVANCED)
    assert all(np.array_equal(a, b) for a, b in zip(pixels(first[1]), pixels(second[1])))
    random_start = stepping.start(tiny_pipeline, "boat", -1, 2, *ADVANCED)[0]
    assert random_start.levels[-1].candidates[1].seeds[-1] == random_start.levels[-1].candidates[0].seeds[-1] + 1


def test_choosing_the_last_stage_leaves_only_finish(tiny_pipeline):
    stepper = stepping.start(tiny_pipeline, "dog", 1, 1, *ADVANCED)[0]
    for _ in range(tiny_pipeline.num_stages - 1):
        stepper = stepping.choose(tiny_pipeline, stepper, 1, "dog", 1, *ADVANCED)[0]
    stepper, candidates, chosen, status = stepping.choose(tiny_pipeline, stepper, 1, "dog", 1, *ADVANCED)
    assert candidates == [] and len(chosen) == tiny_pipeline.num_stages and "press Finish" in status
    for action in (lambda: stepping.more(tiny_pipeline, stepper, "dog", 1, *ADVANCED),
                   lambda: stepping.choose(tiny_pipeline, stepper, 1, "dog", 1, *ADVANCED)):
        with pytest.raises(handlers.UserError, match="every stage is chosen"):
            action()
    images, history, status, _ = stepping.finish(tiny_pipeline, None, stepper, "dog", 2, *ADVANCED)
    assert len(images) == 2 and status == "finished: kept the chosen stages 0..4, seeds 6, 7"


def test_stepping_from_the_viewed_image_keeps_its_stages_and_back_goes_through_them(tiny_pipeline):
    *_, history, _ = list(handlers.generate(tiny_pipeline, None, "apple", 40, 2, *ADVANCED))[-1]
    stepper, candidates, chosen, status = stepping.step_from(tiny_pipeline, history, 2, 2, "apple", 5, 3, *ADVANCED)
    assert "kept stages 0..2 of image 2 (generate apple)" in status and "3 candidates for stage 3" in status
    assert [caption for _, caption in chosen] == ["stage 0: apple", "stage 1: apple", "stage 2: apple"]
    source = history.current.result
    path = stepper.path
    assert (path.labels_SN == source.labels_BSN[1, :4]).all() and path.seeds == (41, 41, 41)
    stepper, alone, chosen, status = stepping.back(tiny_pipeline, stepper)
    assert len(alone) == 1 and alone[0][1] == "1: seed 41" and len(chosen) == 2  # the image's own stage 2


def test_stepping_refuses_what_it_cannot_do_with_a_message(tiny_pipeline):
    with pytest.raises(handlers.UserError, match="press Start first"):
        stepping.choose(tiny_pipeline, None, 1, "apple", 4, *ADVANCED)
    stepper = stepping.start(tiny_pipeline, "apple", 1, 2, *ADVANCED)[0]
    with pytest.raises(handlers.UserError, match="click a candidate first"):
        stepping.finish(tiny_pipeline, None, stepper, "apple", 2, *ADVANCED)
    with pytest.raises(handlers.UserError, match="nothing to go back to"):
        stepping.back(tiny_pipeline, stepper)
    with pytest.raises(handlers.UserError, match="candidate must be between 1 and 2"):
        stepping.choose(tiny_pipeline, stepper, 3, "apple", 2, *ADVANCED)
    with pytest.raises(handlers.UserError, match="num candidates must be between 1 and 8"):
        stepping.more(tiny_pipeline, stepper, "apple", 9, *ADVANCED)
    with pytest.raises(handlers.UserError, match="drawn by the model 'tiny'"):
        stepping.more(make_tiny_pipeline(1, "other"), stepper, "apple", 2, *ADVANCED)
    with pytest.raises(handlers.UserError, match="generate an image first"):
        stepping.step_from(tiny_pipeline, None, 1, 1, "apple", 1, 2, *ADVANCED)
