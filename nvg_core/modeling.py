"""The diffusers base of NVG's networks (tokenizer, transformer, evaluator).

Each network is a diffusers ModelMixin + ConfigMixin: the keyword arguments of its constructor are its
registered config (`model.config`, saved as config.json beside diffusion_pytorch_model.safetensors), so
from_pretrained / save_pretrained, torch_dtype, variant="fp16", safetensors and the hub cache behave as for
any diffusers model. The same values are also kept as the network's config dataclass (`model.spec`), which
checks them once and derives sizes (num_stages, num_bits, ...); the dataclasses also name the presets
(TOKENIZER_CONFIGS, TRANSFORMER_CONFIGS) and are what the official converter reads from a checkpoint.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from diffusers.configuration_utils import ConfigMixin
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import is_accelerate_available


class SpecModel(ModelMixin, ConfigMixin):
    """A diffusers model whose registered config is also a checked dataclass, `spec`."""

    spec_class: ClassVar[type]

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> SpecModel:
        """ModelMixin.from_pretrained, without diffusers' advice to install accelerate (not a dependency)."""
        kwargs.setdefault("low_cpu_mem_usage", is_accelerate_available())
        return super().from_pretrained(*args, **kwargs)

    @classmethod
    def from_spec(cls, spec: Any) -> SpecModel:
        """A new network (random weights) of the sizes in a config dataclass."""
        return cls(**dataclasses.asdict(spec))

    def _build_spec(self) -> Any:
        """The config dataclass of the registered config (call first thing in __init__; raises if invalid)."""
        names = {field.name for field in dataclasses.fields(self.spec_class)}
        self.spec = self.spec_class(**{k: v for k, v in self.config.items() if k in names})
        return self.spec
