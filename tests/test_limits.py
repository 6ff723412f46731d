"""nvg_core.limits: every run is bounded before any compute, stops at its time budget, and says its cost."""

import math
import time

import pytest

from nvg_core import limits
from nvg_core.cli import main
from nvg_core.limits import MAX_FLOW_STEPS, Limits, LimitError, TimeBudgetExceeded, estimate_cost
from nvg_core.recipe import save_png
from nvg_core.sampling import SamplingOptions


@pytest.mark.parametrize("field", ["content_guidance", "structure_guidance", "top_p", "temperature", "top_k"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_sampling_options_refuse_nan_and_infinities_as_constants_and_per_stage(field, bad):
    for value in (bad, [1.0, 1.0, bad, 1.0, 1.0]):
        with pytest.raises(ValueError, match=f"{field} values must be finite numbers"):
            SamplingOptions(**{field: value}).resolved(5)


@pytest.mark.parametrize("steps", [0, -3, MAX_FLOW_STEPS + 1, 10_000_000, 2.5, True, "25", math.nan])
def test_flow_steps_are_whole_numbers_up_to_the_documented_bound(steps):
    with pytest.raises(ValueError, match=f"flow_steps must be a whole number from 1 to {MAX_FLOW_STEPS}"):
        SamplingOptions(flow_steps=steps).resolved(5)


@pytest.mark.parametrize("kwargs", [dict(max_images=0), dict(max_images=limits.MAX_IMAGES + 1), dict(max_flow_steps=2.0),
                                    dict(max_seconds=math.nan), dict(max_seconds=-1), dict(memory_share=1.5)])
def test_limits_themselves_are_checked(kwargs):
    with pytest.raises(ValueError):
        Limits(**kwargs)


def no_compute(monkeypatch, pipe):
    def computed(*args, **kwargs):
        raise AssertionError("a refused run reached the network")
    monkeypatch.setattr(pipe.transformer, "forward_content", computed)
    monkeypatch.setattr(pipe.transformer, "forward_structure", computed)


def test_a_run_over_its_limits_is_refused_naming_the_bound_before_any_compute(tiny_pipeline, monkeypatch):
    source = tiny_pipeline.generate(["cat"], seeds=[1])
    no_compute(monkeypatch, tiny_pipeline)
    with pytest.raises(LimitError, match="the run has 3 images; the limit is 2 images per run"):
        tiny_pipeline.generate(["cat"] * 3, seeds=[1, 2, 3], limits=Limits(max_images=2))
    with pytest.raises(LimitError, match="the run uses 30 flow steps; the limit is 20"):
        tiny_pipeline.generate(["cat"], seeds=[1], options=SamplingOptions(flow_steps=30), limits=Limits(max_flow_steps=20))
    with pytest.raises(ValueError, match="content_guidance values must be finite"):
        tiny_pipeline.generate(["cat"], seeds=[1], options=SamplingOptions(content_guidance=math.nan))
    with pytest.raises(LimitError, match="the run has 2 images; the limit is 1 images per run"):
        tiny_pipeline.regenerate(source, from_stage=2, num_variations=2, seeds=[5, 6], limits=Limits(max_images=1))


def test_a_run_whose_estimated_peak_would_not_fit_is_refused(tiny_pipeline, monkeypatch):
    no_compute(monkeypatch, tiny_pipeline)
    peak = tiny_pipeline.run_cost(4).peak_bytes
    monkeypatch.setattr(limits, "available_memory", lambda device: int(1.5 * peak))
    with pytest.raises(LimitError, match="the run of 4 images needs about .* of memory; .* a run may take 50% of it"):
        tiny_pipeline.generate(["cat"] * 4, seeds=range(4), limits=Limits(memory_share=0.5))


def test_a_run_past_its_time_budget_stops_inside_the_structure_flow(tiny_pipeline, monkeypatch):
    forward = tiny_pipeline.transformer.forward_structure

    def slow(*args, **kwargs):
        time.sleep(0.02)
        return forward(*args, **kwargs)

    monkeypatch.setattr(tiny_pipeline.transformer, "forward_structure", slow)
    start = time.monotonic()
    with pytest.raises(TimeBudgetExceeded, match=r"stopped at stage 0, flow step \d+ of 200: it passed its time budget of 0.2 s"):
        tiny_pipeline.generate(["cat"], seeds=[1], options=SamplingOptions(flow_steps=200), limits=Limits(max_seconds=0.2))
    assert time.monotonic() - start < 2  # 200 steps would take 4 s at least


def test_the_estimated_cost_grows_with_images_and_flow_steps(tiny_pipeline):
    spec, tok = tiny_pipeline.transformer.spec, tiny_pipeline.tokenizer.spec
    one, eight = estimate_cost(spec, tok, 1, 25), estimate_cost(spec, tok, 8, 25)
    assert eight.flops == 8 * one.flops and eight.peak_bytes == 8 * one.peak_bytes
    assert estimate_cost(spec, tok, 1, 50).flops > one.flops and estimate_cost(spec, tok, 1, 25, "cuda").seconds < one.seconds
    assert "8 images: about" in str(eight) and "on cpu (estimated)" in str(eight)


def test_reproduce_checks_the_recipes_run_against_the_given_limits(tiny_pipeline):
    run = tiny_pipeline.generate(["cat", "dog", "apple"], seeds=[1, 2, 3])
    with pytest.raises(LimitError, match="the run has 3 images; the limit is 2"):
        tiny_pipeline.reproduce(run.recipes[1], limits=Limits(max_images=2))
    assert (tiny_pipeline.reproduce(run.recipes[1]).images == run.images[1:2]).all()


def test_nvg_generate_recipe_says_the_cost_first_and_asks_for_yes_when_large(tiny_pipeline, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "model"
    tiny_pipeline.save_pretrained(folder)
    path = tmp_path / "run.png"
    save_png(tiny_pipeline(["cat", "dog"], seeds=[1, 2]).images[1], path)
    monkeypatch.setattr("nvg_core.cli.LARGE_RUN_S", 0)
    assert main(["generate", "--model", str(folder), "--recipe", str(path), "--out", str(tmp_path / "a.png")]) == 2
    out, err = capsys.readouterr()
    assert "the run makes 2 images: about" in out and "add --yes to go on" in err and not (tmp_path / "a.png").exists()
    assert main(["generate", "--model", str(folder), "--recipe", str(path), "--out", str(tmp_path / "a.png"), "--yes"]) == 0
    assert (tmp_path / "a.png").exists()
