"""Masked regeneration with the bundled model: what people see change, what moves outside the mask, and local
vs global class swaps.

Usage: python bench/bench_edit.py --page [--classes 32] [--seeds 2] [--from-stage S] [--cover C] [--cluster-stage S]
       python bench/bench_edit.py [--num 24] [--stages 3 5] [--data data/emoji64.npz]

--page measures the Edit tab as people use it, through the app's handlers at the page's defaults (or the
given stage and cover): every class x seeds generated images, 4 masks each (the upper-right quarter, the
left half, a centred disc of a quarter of the area, a 6 px brush stroke across the image, painted on the
page's 256 px canvas), 4 variations per edit. Printed: the median share of painted pixels that change by
more than PERCEPTIBLE/255 in some channel; the pixels outside the mask beyond the 2 px feather that
change at all (the promise: 0); the median share of painted pixels where the 4 variations differ among
themselves by more than PERCEPTIBLE/255; "resample this cluster" at the page's default stage (the
cluster under the image's centre): the median share of the cluster's pixels changed perceptibly; and
the seconds per edit (run it on a quiet machine).

Without --page:

Sources are generated images and, when --data exists, held-out emoji (tokenized). Each gets a random
rectangle mask covering 10-40% of the image and one masked regeneration per stage (pipe.regenerate /
Locks.from_mask). Printed per source kind and stage:
- changed: the share of latent positions outside the painted cells whose code changed at any stage (must be 0);
- the share of painted cells resampled from each stage on (Locks.from_mask frees a cluster once it lies
  wholly under the mask; NVG clusters are scattered, so coarse stages rarely do);
- PSNR outside the painted mask against the source image (the decoder's receptive field carries changes
  a few pixels across), raw and with blend_outside (what pipe.regenerate does by default);
- for generated sources, a class swap inside the mask only (local) against the same swap on the whole image
  from the same stage (global): the evaluator's accuracy for the new class on the mask's bounding box
  (resized to the evaluator's input) and on the whole image;
- the wall time of one edit with 4 variations (run it on a quiet machine).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from nvg_core.evaluate import load_evaluator
from nvg_core.images import PERCEPTIBLE, beyond_feather, blend_outside, changed_shares, feather_width, mask_at, to_uint8
from nvg_core.locks import INPAINT_STAGE, Locks, mask_cells
from nvg_core.metrics import embed_images
from nvg_core.pipeline import BUNDLED_MODEL, NVGPipeline


def random_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A rectangle covering 10-40% of a size x size image."""
    while True:
        h, w = rng.integers(size // 4, size, 2)
        if 0.10 <= h * w / size**2 <= 0.40:
            top, left = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
            mask = np.zeros((size, size), bool)
            mask[top:top + h, left:left + w] = True
            return mask


def psnr_where(a_HW3: np.ndarray, b_HW3: np.ndarray, where_HW: np.ndarray) -> float:
    if not where_HW.any():
        return float("nan")
    return peak_signal_noise_ratio(a_HW3[where_HW], b_HW3[where_HW], data_range=255)


def crop(image_HW3: np.ndarray, mask_HW: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(mask_HW.any(1)), np.flatnonzero(mask_HW.any(0))
    box = image_HW3[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return np.asarray(Image.fromarray(box).resize(image_HW3.shape[:2][::-1], Image.BILINEAR))


def page_masks(size: int) -> dict[str, np.ndarray]:
    """The four masks of the page protocol, painted on a size x size canvas."""
    rows, cols = np.mgrid[:size, :size]
    stroke = np.zeros((size, size), np.uint8)
    cv2.line(stroke, (size // 8, size * 3 // 4), (size * 7 // 8, size // 4), 255, thickness=6 * size // 64)
    return {"upper-right quarter": (rows < size // 2) & (cols >= size // 2), "left half": cols < size // 2,
            "centred disc": (rows - size / 2 + 0.5) ** 2 + (cols - size / 2 + 0.5) ** 2 <= size**2 / 4 / np.pi,
            "6 px stroke": stroke > 0}


def page_protocol(args: argparse.Namespace) -> None:
    """The Edit tab's region and cluster edits at the page's defaults, measured on what people download."""
    from app import handlers
    from app.history import History

    pipe = NVGPipeline.from_pretrained(device="cpu")
    advanced = handlers.advanced_values(pipe.default_options)
    size = pipe.tokenizer.spec.resolution
    canvas = handlers.EDIT_SIZE
    masks = page_masks(canvas)
    painted_share, outside_moved, diverse, cluster_share, seconds = [], 0, [], [], []
    for c in range(min(args.classes, len(pipe.class_names))):
        for seed in range(args.seeds):
            *_, (_, _, history, _) = handlers.generate(pipe, History(), pipe.class_names[c], 1000 * c + seed, 1, *advanced)
            before = to_uint8(history.current.result.images)[0]
            for name, mask in masks.items():
                start = time.perf_counter()
                images, _, status = handlers.edit_region(pipe, history, {"layers": [mask.astype(np.uint8) * 255]},
                                                         args.from_stage, "", 4, 7 + seed, *advanced, 1, args.cover)
                seconds.append(time.perf_counter() - start)
                painted = mask_at(mask, size)
                after = np.stack([np.asarray(d.data.convert("RGB")) for d, _ in images])
                painted_share += [changed_shares(before, image, painted)[0] for image in after]
                beyond = beyond_feather(painted)
                outside_moved += int((after[:, beyond] != before[beyond]).any(-1).sum())
                spread = (after.max(0).astype(int) - after.min(0)).max(-1)
                diverse.append(float((spread[painted] > PERCEPTIBLE).mean()))
            stage = args.cluster_stage
            cell = (pipe.transformer.spec.grid_size // 2) * (pipe.transformer.spec.grid_size + 1)
            cluster = int(history.current.result.labels_BSN[0, stage, cell])
            images, _, _ = handlers.edit_cluster(pipe, history, stage, cluster, "resample this cluster", 4, 7 + seed,
                                                 *advanced, 1)
            cells = pipe.cells_to_pixels(history.current.result.labels_BSN[0, stage] == cluster)
            cluster_share += [changed_shares(before, np.asarray(d.data.convert("RGB")), cells)[0] for d, _ in images]
        print(f"  class {c + 1}/{args.classes} done", flush=True)
    print(f"page protocol: {args.classes} classes x {args.seeds} seeds x {len(masks)} masks x 4 variations; edit from "
          f"stage {args.from_stage}, cover {args.cover}; cluster edit at stage {args.cluster_stage}; "
          f"perceptible: > {PERCEPTIBLE}/255 in some channel")
    print(f"  painted pixels changed perceptibly, median {np.median(painted_share):.0%} (quartiles "
          f"{np.percentile(painted_share, 25):.0%}-{np.percentile(painted_share, 75):.0%})")
    print(f"  pixels outside the mask beyond the {feather_width(size)} px feather that changed: {outside_moved}")
    print(f"  painted pixels where the 4 variations differ perceptibly, median {np.median(diverse):.0%}")
    print(f"  resample this cluster (stage {args.cluster_stage}): cluster pixels changed perceptibly, median "
          f"{np.median(cluster_share):.0%}")
    print(f"  seconds per edit (4 variations): median {np.median(seconds):.2f} ({torch.get_num_threads()} threads)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", action="store_true", help="the Edit tab's protocol (see above)")
    parser.add_argument("--classes", type=int, default=32, help="--page: classes (the first N)")
    parser.add_argument("--seeds", type=int, default=2, help="--page: generated images per class")
    parser.add_argument("--from-stage", type=int, default=None, help="--page: the edit stage (default: the page's)")
    parser.add_argument("--cover", type=float, default=0.0, help="--page: cover (default 0, the page's)")
    parser.add_argument("--cluster-stage", type=int, default=None, help="--page: the cluster edit's stage (default: the page's)")
    parser.add_argument("--num", type=int, default=24, help="sources of each kind")
    parser.add_argument("--stages", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--data", type=Path, default=Path("data/emoji64.npz"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 for a run beside another)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.page:
        from app import ui
        args.from_stage = INPAINT_STAGE if args.from_stage is None else args.from_stage
        args.cluster_stage = ui.VIEWED_STAGE if args.cluster_stage is None else args.cluster_stage
        page_protocol(args)
        return
    pipe = NVGPipeline.from_pretrained(device="cpu")
    evaluator = load_evaluator(BUNDLED_MODEL)
    size, rng = pipe.tokenizer.spec.resolution, np.random.default_rng(0)
    K = len(pipe.class_names)

    classes = rng.integers(0, K, args.num)
    generated = pipe.generate(classes.tolist(), seeds=list(range(args.num)))
    sources = [("generated", generated.select(i), int(classes[i])) for i in range(args.num)]
    if args.data.is_file():
        from nvg_core.data.emoji import load_emoji_dataset, split_by_emoji
        data = load_emoji_dataset(args.data)
        held = split_by_emoji(data.emoji)[1]
        held = held[data.label[held] >= 0]
        held = held[np.linspace(0, len(held) - 1, args.num).astype(int)]
        for j in held:  # compared with the emoji itself: outside the mask the tokenizer's loss counts too
            sources.append(("held-out emoji", pipe.from_image(data.images[j], int(data.label[j])), int(data.label[j])))
    else:
        print(f"(no dataset at {args.data}: generated sources only)")

    print(f"masks: random rectangles over 10-40% of the image; {args.num} sources per kind; one variation each")
    for kind in dict.fromkeys(k for k, _, _ in sources):
        for stage in args.stages:
            rows = []
            for n, (k, source, label) in enumerate(s for s in sources if s[0] == kind):
                mask = random_mask(rng, size)
                locks = Locks.from_mask(source, mask, stage)
                out = pipe.regenerate(source, from_stage=stage, locks=locks, seeds=[1000 + n], blend=False)
                painted_N = mask_cells(mask, pipe.transformer.spec.grid_size)
                changed = (out.codes_BSN[0] != source.codes_BSN[0]).any(0).numpy()
                before, after = to_uint8(source.images)[0], to_uint8(out.images)[0]
                blended = blend_outside(after, before, pipe.cells_to_pixels(locks.free_BSN[0, -1]))
                freed_S = locks.free_BSN[0][:, painted_N].float().mean(1).numpy()
                rows.append([changed[~painted_N].mean(), mask.mean(), psnr_where(after, before, ~mask),
                             psnr_where(blended, before, ~mask), *freed_S])
            r = np.nanmean(np.array(rows, float), 0)
            print(f"{kind:>15}, from stage {stage}: changed outside the mask {r[0]:.4f}; painted {r[1]:.0%}; "
                  f"PSNR outside it {r[2]:.1f} dB raw, {r[3]:.1f} dB blended; painted cells free at stages "
                  f"{stage}..{pipe.num_stages - 1}: " + " ".join(f"{x:.0%}" for x in r[4 + stage:]))

    print("\nclass swap of generated images to another class (evaluator accuracy for the new class)")
    targets = (classes + rng.integers(1, K, args.num)) % K
    for stage in args.stages:
        local, whole, glob_local, glob_whole = [], [], [], []
        for n in range(args.num):
            source, mask = generated.select(n), random_mask(rng, size)
            masked = pipe.regenerate(source, from_stage=stage, mask=mask, class_labels=int(targets[n]), seeds=[n])
            everywhere = pipe.regenerate(source, from_stage=stage, class_labels=int(targets[n]), seeds=[n])
            a, b = to_uint8(masked.images)[0], to_uint8(everywhere.images)[0]
            local.append(crop(a, mask)), whole.append(a), glob_local.append(crop(b, mask)), glob_whole.append(b)
        acc = [float((embed_images(evaluator, np.stack(x))[1].argmax(1) == targets).mean())
               for x in (local, whole, glob_local, glob_whole)]
        print(f"  from stage {stage}: local swap {acc[0]:.2f} in the mask box, {acc[1]:.2f} whole image; "
              f"global swap {acc[2]:.2f} in the mask box, {acc[3]:.2f} whole image")

    source, mask = generated.select(0), random_mask(rng, size)
    pipe.regenerate(source, from_stage=3, mask=mask, seeds=[0, 1, 2, 3], num_variations=4)  # warm-up
    start = time.perf_counter()
    pipe.regenerate(source, from_stage=3, mask=mask, seeds=[0, 1, 2, 3], num_variations=4)
    print(f"\none edit, 4 variations from stage 3: {time.perf_counter() - start:.2f} s ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
