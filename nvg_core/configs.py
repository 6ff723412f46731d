"""Named model configurations: which tokenizer goes with which transformer.

The component configs live beside their modules (TOKENIZER_CONFIGS in tokenizer.py, TRANSFORMER_CONFIGS
in transformer.py); a model pairs one of each. `random_models` builds a pair with random weights, for
tests and benchmarks of sizes whose weights are not at hand.
"""

from __future__ import annotations

import torch

from .tokenizer import TOKENIZER_CONFIGS, NVGTokenizer
from .transformer import TRANSFORMER_CONFIGS, NVGTransformer

MODEL_CONFIGS: dict[str, tuple[str, str]] = {
    "emoji": ("emoji-f4", "emoji-s"),  # the bundled CPU model
    "official-d16": ("official-f16", "official-d16"),
    "official-d20": ("official-f16", "official-d20"),
    "official-d24": ("official-f16", "official-d24"),
}


def random_models(name: str, seed: int = 0) -> tuple[NVGTransformer, NVGTokenizer]:
    """A transformer and its tokenizer with random weights (seeded), in fp32 on the CPU."""
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model config {name!r}; known: {', '.join(MODEL_CONFIGS)}")
    tokenizer_name, transformer_name = MODEL_CONFIGS[name]
    torch.manual_seed(seed)
    return (NVGTransformer.from_spec(TRANSFORMER_CONFIGS[transformer_name]),
            NVGTokenizer.from_spec(TOKENIZER_CONFIGS[tokenizer_name]))
