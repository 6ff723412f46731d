"""Test-wide settings: no network, CPU, deterministic torch threads."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest
import torch

from nvg_core.pipeline import NVGPipeline
from nvg_core.sampling import SamplingOptions
from nvg_core.tokenizer import TOKENIZER_CONFIGS, NVGTokenizer
from nvg_core.transformer import TRANSFORMER_CONFIGS, NVGTransformer

TINY_CLASSES = ["apple", "boat", "cat", "dog"]


def make_tiny_pipeline(seed: int = 0) -> NVGPipeline:
    """A tiny random model: 16 px images, a 4x4 grid (5 stages), 4 classes. Fast; not trained."""
    torch.manual_seed(seed)
    return NVGPipeline(NVGTokenizer.from_spec(TOKENIZER_CONFIGS["tiny"]), NVGTransformer.from_spec(TRANSFORMER_CONFIGS["tiny"]),
                       TINY_CLASSES, device="cpu", default_options=SamplingOptions(flow_steps=3), name="tiny")


@pytest.fixture(scope="session")
def tiny_pipeline() -> NVGPipeline:
    return make_tiny_pipeline()
