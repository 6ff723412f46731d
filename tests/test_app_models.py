"""The model picker's store: one load per model, "still loading" and "could not be loaded" messages."""

import threading

import pytest

pytest.importorskip("gradio")

from app.handlers import UserError  # noqa: E402
from app.models import BUNDLED_LABEL, ModelLoading, ModelStore, default_sources, peek  # noqa: E402
from nvg_core.official import OFFICIAL_CLASS_NAMES  # noqa: E402
from nvg_core.sampling import official_options  # noqa: E402


def test_a_request_while_the_model_loads_is_told_to_wait_then_served(tiny_pipeline):
    release, calls = threading.Event(), []

    def slow_loader(source):
        calls.append(source)
        release.wait(10)
        return tiny_pipeline

    store = ModelStore({"slow": "somewhere"}, loader=slow_loader)
    store.start("slow")
    with pytest.raises(ModelLoading, match="'slow' is still loading"):  # the page keeps polling on this type
        store.get("slow")
    release.set()
    assert store.get("slow", wait=10) is tiny_pipeline
    assert store.get("slow") is tiny_pipeline and calls == ["somewhere"]  # loaded once


def test_a_request_that_comes_while_a_load_is_being_started_waits_for_it(tiny_pipeline, monkeypatch):
    """The server starts the default model's load as the page's first request arrives: the request must
    never see a load thread that is registered but not started yet."""
    starting = threading.Event()

    class SlowToStart(threading.Thread):
        def start(self):
            starting.set()
            threading.Event().wait(0.3)  # a busy machine between creating the thread and starting it
            super().start()

    store = ModelStore({"tiny": "tiny"}, loader=lambda source: tiny_pipeline)
    starter = threading.Thread(target=store.start, args=("tiny",))
    monkeypatch.setattr(threading, "Thread", SlowToStart)  # the store's load thread
    starter.start()
    starting.wait(5)
    assert store.get("tiny", wait=10) is tiny_pipeline
    starter.join()


def test_a_failed_load_is_reported_and_retried_only_after_a_pause(tiny_pipeline, monkeypatch, caplog):
    attempts = []

    def flaky_loader(source):
        attempts.append(source)
        if len(attempts) == 1:
            raise OSError("disk on fire")
        return tiny_pipeline

    store = ModelStore({"flaky": "x"}, loader=flaky_loader)
    caplog.set_level("INFO", logger="nvg_studio")
    for _ in range(2):
        with pytest.raises(UserError, match="flaky could not be loaded .*details are in the server log") as failed:
            store.get("flaky", wait=10)
        assert "disk on fire" not in str(failed.value)  # the page gets a short notice ...
        assert not isinstance(failed.value, ModelLoading)  # ... and stops polling
    assert "OSError: disk on fire" in caplog.text  # ... the log gets the details
    store.start("flaky")  # a picker sending its input twice: a fresh failure is not retried at once
    with pytest.raises(UserError, match="could not be loaded"):
        store.get("flaky", wait=10)
    assert len(attempts) == 1
    monkeypatch.setattr("app.models.RETRY_AFTER_S", 0.0)
    store.start("flaky")
    assert store.get("flaky", wait=10) is tiny_pipeline and len(attempts) == 2


def test_unknown_model_names_are_refused(tiny_pipeline):
    with pytest.raises(UserError, match="unknown model 'nope'"):
        ModelStore.of(tiny_pipeline).get("nope")


def test_the_official_model_offline_gets_a_short_notice_and_the_log_says_why(caplog):
    store = ModelStore(default_sources())
    official = next(name for name, source in store.sources.items() if source == "yikaiwang/nvg")
    caplog.set_level("INFO", logger="nvg_studio")
    with pytest.raises(UserError, match="could not be loaded \\(offline"):
        store.get(official, wait=60)
    assert "HF_HUB_OFFLINE" in caplog.text


def test_picker_lists_the_bundled_and_official_models_and_knows_them_before_loading():
    sources = default_sources()
    assert list(sources)[0] == BUNDLED_LABEL and {"yikaiwang/nvg", "yikaiwang/nvg:d20"} <= set(sources.values())
    assert list(default_sources("my/model"))[0] == "my/model"
    bundled, official = peek(None), peek("yikaiwang/nvg")
    assert len(bundled.class_names) == 32 and bundled.num_stages == 9 and bundled.defaults.flow_steps == 2
    assert bundled.defaults.structure_guidance[:2] == [4.0, 4.0] and bundled.defaults.top_p[-1] == 0.5  # its own, written out
    assert official.class_names == OFFICIAL_CLASS_NAMES and official.num_stages == 9
    assert official.defaults == official_options(9)  # what convert_official stores
    assert peek("/no/such/folder") is None
