"""Cost of the bundled model's design on a 16x16 grid against an 8x8 grid: training and sampling speed.

Usage: python bench/bench_grid.py [--batch-size 64] [--stages-per-sample 2] [--flow-steps 8] [--steps 3]

Random weights of the bundled model's configs on a 16x16 grid (emoji-f4 tokenizer, emoji-s transformer,
9 stages) and of the same design on an 8x8 grid (emoji-f8, emoji-s8, 7 stages). Training is timed as in
`nvg train generator` (the loss on k random stages per image, backward, AdamW) on latents the tokenizer
made beforehand; sampling is timed for a batch of 4 images with the default guidance schedules. Quality
needs trained models and is not measured here.
"""

import argparse
import time
from dataclasses import replace

import torch

from nvg_core.objective import nvg_loss
from nvg_core.pipeline import NVGPipeline
from nvg_core.tokenizer import TOKENIZER_CONFIGS, NVGTokenizer
from nvg_core.transformer import TRANSFORMER_CONFIGS, NVGTransformer


def models(grid: int) -> tuple[NVGTokenizer, NVGTransformer]:
    tokenizer, transformer = {16: ("emoji-f4", "emoji-s"), 8: ("emoji-f8", "emoji-s8")}[grid]
    return NVGTokenizer.from_spec(TOKENIZER_CONFIGS[tokenizer]).eval(), NVGTransformer.from_spec(TRANSFORMER_CONFIGS[transformer])


def training_rate(tokenizer: NVGTokenizer, model: NVGTransformer, batch_size: int, k: int, steps: int) -> float:
    """Training images per second (one warm-up step, then `steps` timed)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        tokens = tokenizer.encode(torch.rand(batch_size, 3, 64, 64, generator=generator) * 2 - 1)
    classes_B = torch.randint(0, model.config.num_classes, (batch_size,), generator=generator)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    seconds = []
    for step in range(steps + 1):
        start = time.perf_counter()
        loss, _ = nvg_loss(model, tokens.canvases_BSNC, tokens.final_BNC, tokens.labels_BSN, tokens.codes_BSN, classes_B,
                           generator, stages_per_sample=k)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seconds.append(time.perf_counter() - start)
    return batch_size / (sum(seconds[1:]) / steps)


def sampling_seconds(tokenizer: NVGTokenizer, model: NVGTransformer, flow_steps: int) -> float:
    """Seconds per image for a batch of 4 (after a warm-up batch)."""
    pipe = NVGPipeline(tokenizer, model, [str(i) for i in range(model.config.num_classes)], device="cpu")
    options = replace(pipe.default_options, flow_steps=flow_steps)  # the authors' settings otherwise
    pipe.generate([0, 1, 2, 3], seeds=[0, 1, 2, 3], options=options)
    start = time.perf_counter()
    pipe.generate([0, 1, 2, 3], seeds=[4, 5, 6, 7], options=options)
    return (time.perf_counter() - start) / 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--stages-per-sample", type=int, default=2)
    parser.add_argument("--flow-steps", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"{torch.get_num_threads()} threads; training: batch {args.batch_size}, {args.stages_per_sample} stages "
          f"per image; sampling: {args.flow_steps} flow steps, guidance on")
    for grid in (16, 8):
        tokenizer, model = models(grid)
        rate = training_rate(tokenizer, model, args.batch_size, args.stages_per_sample, args.steps)
        per_image = sampling_seconds(tokenizer, model, args.flow_steps)
        print(f"  {grid}x{grid} grid, {model.spec.num_stages} stages: training {rate:6.1f} images/s, "
              f"sampling {per_image:5.2f} s per image")


if __name__ == "__main__":
    main()
