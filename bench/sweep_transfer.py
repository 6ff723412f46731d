"""Structure transfer and class swap under several sampling settings for runs that impose stages, judged by
the frozen evaluator: the sweep behind a model's "transfer_options" (model_index.json).

    python bench/sweep_transfer.py --data data/emoji64.npz                 # every setting, 64 runs each
    python bench/sweep_transfer.py --data data/emoji64.npz --settings model cg6 --pairs 32

Every setting sees the same references, photos, classes and seeds (nvg_core.evaluate.transfer_and_swap);
free generation (the model's default_options) is measured once. Settings change only the runs with
imposed stages. With 64 runs one image is 0.016 of accuracy; treat gaps under about 0.06 as noise.
"""

import argparse
import json
import time
from dataclasses import replace

import torch

from nvg_core.data.emoji import load_emoji_dataset
from nvg_core.evaluate import load_evaluator, transfer_and_swap
from nvg_core.pipeline import BUNDLED_MODEL, NVGPipeline
from nvg_core.sampling import SamplingOptions


def settings(pipe: NVGPipeline) -> dict[str, SamplingOptions]:
    """Named settings for imposed runs, each a change of the model's free-generation defaults."""
    S, base = pipe.num_stages, pipe.default_options
    return {
        "model": base,
        "cg6": replace(base, content_guidance=[6.0] * S),
        "cg6_p1": replace(base, content_guidance=[6.0] * S, top_p=[1.0] * S),
        "cg4_p1": replace(base, content_guidance=[4.0] * S, top_p=[1.0] * S),
        "cg9_p1": replace(base, content_guidance=[9.0] * S, top_p=[1.0] * S),
        "cg6_p1_sg4": replace(base, content_guidance=[6.0] * S, top_p=[1.0] * S, structure_guidance=[4.0] * S),
        "cg6_t08": replace(base, content_guidance=[6.0] * S, temperature=[0.8] * S),
        "p1": replace(base, top_p=[1.0] * S),
        "early_cg4_p1": replace(base, content_guidance=[4.0] * 4 + list(base.content_guidance[4:]), top_p=[1.0] * S),
        "t08": replace(base, temperature=[0.8] * S),
    }


def row(name: str, report: dict) -> str:
    held, photos, swap = report["transfer_heldout"], report["transfer_photos"], report["class_swap"]
    cells = [f"{held[k]['accuracy']:.3f}" for k in ("1", "2", "3")] + [f"{held[k]['source_rate']:.3f}" for k in ("1", "2", "3")]
    cells += [f"{photos[k]['accuracy']:.3f}" for k in ("1", "2", "3")]
    cells += [f"{swap['structure_only'][k]['class_b_accuracy']:.3f}/{swap['structure_only'][k]['class_a_rate']:.3f}"
              for k in sorted(swap["structure_only"])]
    cells += [f"{swap[k]['class_b_accuracy']:.3f}/{swap[k]['class_a_rate']:.3f}" for k in sorted(swap["structure_only"])]
    cells += [f"{held[k]['layout_ratio']:.2f}" for k in ("1", "2", "3")] + [f"{photos[k]['layout_ratio']:.2f}" for k in ("1", "2", "3")]
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=BUNDLED_MODEL)
    parser.add_argument("--data", default="data/emoji64.npz")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--swap-stages", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--settings", nargs="+", default=None, help="names from settings() (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", default=None, help="also write every report to this JSON file")
    parser.add_argument("--no-free", action="store_true", help="leave out free generation (measured before)")
    args = parser.parse_args()

    torch.set_grad_enabled(False)
    pipe = NVGPipeline.from_pretrained(args.model, device="cpu")
    evaluator = load_evaluator(BUNDLED_MODEL)
    data = load_emoji_dataset(args.data)
    table = settings(pipe)
    names = args.settings or list(table)
    reports, k = {}, len(args.swap_stages)
    print("| setting | held-out acc k=1 | k=2 | k=3 | source read k=1 | k=2 | k=3 | photo acc k=1 | k=2 | k=3 | "
          + " | ".join(f"swap struct-only k={s} (B acc/A rate)" for s in args.swap_stages) + " | "
          + " | ".join(f"swap struct+content k={s}" for s in args.swap_stages)
          + " | layout ratio held-out k=1 | k=2 | k=3 | photos k=1 | k=2 | k=3 |")
    print("|" + "---|" * (1 + 9 + 2 * k + 6))
    for i, name in enumerate(names):
        start = time.perf_counter()
        report = transfer_and_swap(pipe, evaluator, data, args.pairs, args.seed, table[name],
                                   pipe.default_options if i == 0 and not args.no_free else None, tuple(args.swap_stages))
        reports[name] = {**report, "seconds": round(time.perf_counter() - start, 1)}
        if i == 0 and not args.no_free:
            free = (report["transfer_heldout"]["free"]["accuracy"], report["transfer_photos"]["free"]["accuracy"],
                    report["class_swap"]["free_b"]["class_b_accuracy"])
            print(f"free generation, same classes and seeds: held-out targets {free[0]:.3f}, photo targets "
                  f"{free[1]:.3f}, swap targets {free[2]:.3f}", flush=True)
        print(row(name, report) + f" ({reports[name]['seconds']} s)", flush=True)
        if args.json_out:
            with open(args.json_out, "w") as file:
                json.dump(reports, file, indent=1)


if __name__ == "__main__":
    main()
