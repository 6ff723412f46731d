"""Which classes survive a structure transfer, and which example references transfer well to which class.

    python bench/transfer_by_class.py --data data/emoji64.npz [--stage 2] [--per-class 4]

With the model's transfer_options (runs that impose stages), judged by the frozen evaluator:
- per target class: accuracy when stages 0..k of held-out emoji of other classes are imposed, beside free
  generation of that class with the same seeds (per-class figures of few images: read them as a ranking);
- per example reference in assets/examples (reference_*.png): the classes it transfers to best, over
  two seeds each (what the app's Reference examples offer).
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nvg_core.data.emoji import CLASSES, load_emoji_dataset, split_by_emoji
from nvg_core.evaluate import _spread, generate_images, load_evaluator
from nvg_core.metrics import embed_images
from nvg_core.pipeline import BUNDLED_MODEL, NVGPipeline

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=BUNDLED_MODEL)
    parser.add_argument("--data", default="data/emoji64.npz")
    parser.add_argument("--stage", type=int, default=2, help="impose stages 0..stage")
    parser.add_argument("--per-class", type=int, default=4, help="references per target class")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    pipe = NVGPipeline.from_pretrained(args.model, device="cpu")
    evaluator = load_evaluator(BUNDLED_MODEL)
    data = load_emoji_dataset(args.data)
    C, k = len(CLASSES), args.stage

    _, held = split_by_emoji(data.emoji)
    held = held[data.label[held] >= 0]
    targets = np.repeat(np.arange(C), args.per_class)
    pool = _spread(held, len(held))
    rng = np.random.default_rng(0)
    refs = np.array([rng.choice(pool[data.label[pool] != c]) for c in targets])  # another class's emoji
    seeds = 500_000 + np.arange(len(targets))
    maps = pipe.encode(list(data.images[refs])).labels_BSN[:, :k + 1]
    imposed = embed_images(evaluator, generate_images(pipe, targets, seeds, pipe.transfer_options, maps))[1].argmax(1)
    free = embed_images(evaluator, generate_images(pipe, targets, seeds, pipe.default_options))[1].argmax(1)
    rows = sorted(((float((imposed[targets == c] == c).mean()), float((free[targets == c] == c).mean()), CLASSES[c])
                   for c in range(C)), reverse=True)
    print(f"structure of stages 0..{k} from held-out emoji of other classes, {args.per_class} per class")
    print("| class | transfer | free |\n|---|---|---|")
    for transfer, free_acc, name in rows:
        print(f"| {name} | {transfer:.2f} | {free_acc:.2f} |")

    for path in sorted((ROOT / "assets/examples").glob("reference_*.png")):
        maps = pipe.extract_structure(Image.open(path).convert("RGB"))
        classes = np.repeat(np.arange(C), 2)
        structure = torch.as_tensor(np.repeat(maps[None, :k + 1], len(classes), 0))
        predicted = embed_images(evaluator, generate_images(pipe, classes, 600_000 + np.arange(len(classes)),
                                                            pipe.transfer_options, structure))[1].argmax(1)
        hits = sorted(((int((predicted[classes == c] == c).sum()), CLASSES[c]) for c in range(C)), reverse=True)
        print(f"{path.name}: " + ", ".join(f"{name} {n}/2" for n, name in hits if n > 0))


if __name__ == "__main__":
    main()
