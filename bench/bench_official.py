"""One official-layout image at the paper's settings on this machine, with the time of every pass.

Usage: python bench/bench_official.py [--config official-d16] [--flow-steps 25] [--threads N] [--device cpu]

Random weights of the authors' architecture (nvg_core.configs.random_models), the authors' sampling
settings (official_options: 25 structure flow steps, content guidance 1 -> 3.5, structure guidance
1 -> 2.5), batch 1, fp32. Prints, per stage, the content pass and the structure flow (all its steps,
guided where the stage's scale is not 1) and the total. The authors' code took 702 s for the same on this
2-core CPU (measured 2026-12-05). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from dataclasses import replace

import torch

from nvg_core.benchmark import run_once, sync
from nvg_core.configs import random_models
from nvg_core.sampling import official_options


class TimedModel:
    """The transformer, with the seconds of every content and structure pass added up per stage."""

    def __init__(self, model, device: torch.device):
        self.model, self.device = model, device
        self.seconds: dict[tuple[str, int], float] = defaultdict(float)
        self.calls: dict[tuple[str, int], int] = defaultdict(int)

    def __getattr__(self, name):
        return getattr(self.model, name)

    def _timed(self, kind: str, stage: int, fn, *args):
        sync(self.device)
        start = time.perf_counter()
        out = fn(*args)
        sync(self.device)
        self.seconds[kind, int(stage)] += time.perf_counter() - start
        self.calls[kind, int(stage)] += 1
        return out

    def forward_content(self, canvas_BNC, labels_BN, stage, class_B):
        return self._timed("content", stage, self.model.forward_content, canvas_BNC, labels_BN, stage, class_B)

    def forward_structure(self, canvas_BNC, state_BND, labels_BN, stage, t_B, class_B):
        return self._timed("structure", stage, self.model.forward_structure, canvas_BNC, state_BND, labels_BN, stage, t_B, class_B)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="official-d16")
    parser.add_argument("--flow-steps", type=int, default=None, help="default: the authors' 25")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the blocks first (NVGTransformer.compile_blocks; "
                        "the compile time is reported apart)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    transformer, tokenizer = random_models(args.config)
    transformer, tokenizer = transformer.to(device).eval(), tokenizer.to(device).eval()
    S = transformer.spec.num_stages
    options = official_options(S)
    options = replace(options, flow_steps=args.flow_steps or options.flow_steps)
    if args.compile:
        transformer.compile_blocks()
        start = time.perf_counter()  # one run at 1 flow step compiles the shapes of both batch sizes (guided or not)
        run_once(transformer, tokenizer, 1, replace(options, flow_steps=1), device)
        print(f"compiling the blocks: {time.perf_counter() - start:.1f} s (not counted below)")
    timed = TimedModel(transformer, device)
    stage_seconds, decode_seconds = run_once(timed, tokenizer, 1, options, device)
    total = sum(stage_seconds) + decode_seconds
    print(f"{args.config}, random weights, batch 1, fp32 on {device} ({torch.get_num_threads()} CPU threads), "
          f"{options.flow_steps} flow steps{', compiled blocks' if args.compile else ''}, content guidance {options.content_guidance[0]:.1f}->{options.content_guidance[-1]:.1f}, "
          f"structure guidance {options.structure_guidance[0]:.1f}->{options.structure_guidance[-1]:.1f}")
    print("stage  content s (passes)  structure s (passes)")
    for s in range(S):
        print(f"{s:5d}  {timed.seconds['content', s]:9.2f} ({timed.calls['content', s]})"
              f"  {timed.seconds['structure', s]:10.2f} ({timed.calls['structure', s]})")
    content = sum(v for (k, _), v in timed.seconds.items() if k == "content")
    structure = sum(v for (k, _), v in timed.seconds.items() if k == "structure")
    print(f"total {total:.1f} s per image: content passes {content:.1f} s, structure passes {structure:.1f} s, "
          f"the rest (splits, canvas, decode) {total - content - structure:.1f} s")


if __name__ == "__main__":
    main()
