"""`nvg eval`: how good an emoji model is, measured with the frozen EmojiNet evaluator (metrics.py).

Every figure comes with a real-vs-real reference value beside it:
- tokenizer: PSNR/SSIM (skimage, uint8) of held-out images decoded after every stage, coarse to fine;
- samples: FD-EmojiNet, KID-EmojiNet and precision/recall (k = 3) of N class-balanced samples against a
  class-balanced reference from one half of the training emoji. References: the other half of the
  training emoji (`_real_vs_real`) and the held-out emoji (`_heldout_vs_train`), as many images per class;
- class accuracy of the samples (the evaluator's top class is the requested one; mean over classes) and
  of the held-out real images (`class_accuracy_real`);
- memorisation: distance from each sample to its nearest training image (EmojiNet features, and pixel
  RMSE in uint8 levels), median, beside the same for held-out real images;
- structure fidelity: samples generated on the structure maps of held-out images are re-encoded, and
  the adjusted Rand index of their maps with the imposed ones is given per stage (stage 0 and the last
  stage are trivial), beside a tokenizer round trip (the reconstruction re-encoded) and unrelated images;
- layout following: for structure imposed from held-out images at stages 0..k (k = 1, 2, 3), the share of
  the generated image's pixel variance explained by the stage-k regions, beside the reference image and
  free samples (chance);
- the class in the structure branch: how often the first split keeps its sides for another class (same
  noise) and for other noise (same class), and the flow loss on each stage's deciding bit for held-out
  images with the true vs the null class;
- structure transfer (with the model's transfer_options, for runs that impose stages): the structure of
  stages 0..k (k = 1, 2, 3) of held-out emoji imposed on another class, and of scikit-image's sample photos
  on every class in turn: the requested class's accuracy, how often the source's class is read instead,
  and layout following (the regions' explained variance over the reference's own), beside free
  generation of the same classes and seeds;
- class swap: class-A samples are regenerated as class B with their stages <= k locked (what
  pipe.regenerate does, batched), keeping structure and content or structure only; the evaluator's
  class-B accuracy, mean class-B probability and class-A rate for k = 1..4, beside the unswapped sources
  and free class-B samples. num_samples / 4 runs each (64 at the default 256).
The sections (SECTIONS: tokenizer, quality, structure, transfer, swap) can be asked for alone. A model of
other classes is measured against its folder dataset (evaluate_folder): tokenizer and quality, in EmojiNet's
feature space, which the report says is a generic yardstick there, not an FID.
The evaluator defaults to the bundled model's, so different models are measured with one yardstick.
About 40 minutes for --num-samples 256 on a 2-core CPU (2,423 s, 2026-12-07; transfer and swap take 1,498 s
of it, the quality section 418 s): --sections picks what to measure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from .data.emoji import CLASSES, EmojiDataset, load_emoji_dataset, split_by_emoji
from .data.folder import FolderDataset, load_folder_dataset
from .images import to_uint8
from .locks import Locks
from .metrics import (EmojiNet, adjusted_rand_index, embed_images, frechet_distance, kid, nearest_neighbour_distance,
                      precision_recall)
from .pipeline import BUNDLED_MODEL, NVGPipeline
from .objective import flow_error
from .sampling import NVGResult, SamplingOptions
from .structure import bit_codes

SAMPLE_BATCH = 32
REFERENCE_PER_CLASS = 32  # reference set: up to 32 images of every class from half of the training emoji
SWAP_LOCKED_STAGES = (1, 2, 3, 4)
TRANSFER_STAGES = (1, 2, 3)
SECTIONS = ("tokenizer", "quality", "structure", "transfer", "swap")  # what `nvg eval --sections` may ask for
# scikit-image's bundled sample photos (no download), for structure transfer from photos
PHOTOS = ("astronaut", "camera", "cat", "coffee", "coins", "rocket", "hubble_deep_field", "immunohistochemistry")


def _spread(indices: np.ndarray, count: int) -> np.ndarray:
    """`count` evenly spaced entries of `indices`."""
    return indices[np.linspace(0, len(indices) - 1, count).astype(int)]


def _balanced(positions: np.ndarray, labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Up to `per_class` random entries of `positions` for every class (labels[positions] is the class)."""
    return np.concatenate([rng.permutation(positions[labels[positions] == c])[:per_class] for c in range(len(CLASSES))])


def generate_images(pipe: NVGPipeline, classes_N: np.ndarray, seeds_N: np.ndarray, options: SamplingOptions,
                    structure_NSP: torch.Tensor | None = None) -> np.ndarray:
    """Samples as uint8 (N, H, W, 3), made in batches of SAMPLE_BATCH; optional structure maps to impose."""
    images = []
    for start in range(0, len(classes_N), SAMPLE_BATCH):
        part = slice(start, start + SAMPLE_BATCH)
        result = pipe.generate(classes_N[part].tolist(), seeds=seeds_N[part].tolist(), options=options,
                               locks=None if structure_NSP is None else Locks.from_structure(structure_NSP[part]))
        images.append(to_uint8(result.images))
    return np.concatenate(images)


@torch.inference_mode()
def tokenizer_quality(pipe: NVGPipeline, images_NHWC: np.ndarray, batch_size: int = 64) -> tuple[list[float], list[float]]:
    """Mean PSNR and SSIM (uint8, skimage) of the images decoded from the canvas after every stage."""
    psnr, ssim = [], []
    for start in range(0, len(images_NHWC), batch_size):
        batch_BHWC = images_NHWC[start:start + batch_size]
        canvases_BSNC = pipe.tokenizer.canvas_after_each_stage(pipe.encode(list(batch_BHWC)).codes_BSN)
        decoded_BSHWC = to_uint8(pipe.decode(canvases_BSNC.flatten(0, 1)))
        decoded_BSHWC = decoded_BSHWC.reshape(*canvases_BSNC.shape[:2], *batch_BHWC.shape[1:])
        for original_HWC, stages_SHWC in zip(batch_BHWC, decoded_BSHWC):
            psnr.append([peak_signal_noise_ratio(original_HWC, s, data_range=255) for s in stages_SHWC])
            ssim.append([structural_similarity(original_HWC, s, channel_axis=-1, data_range=255) for s in stages_SHWC])
    return np.mean(psnr, 0).tolist(), np.mean(ssim, 0).tolist()


def _stage_ari(a_BSP: torch.Tensor, b_BSP: torch.Tensor) -> dict[str, float]:
    """Mean adjusted Rand index per non-trivial stage (1 .. S-2) of two batches of structure maps."""
    a, b = a_BSP.cpu().numpy(), b_BSP.cpu().numpy()
    return {str(s): float(np.mean([adjusted_rand_index(x[s], y[s]) for x, y in zip(a, b)]))
            for s in range(1, a.shape[1] - 1)}


def structure_fidelity(pipe: NVGPipeline, images_NHWC: np.ndarray, classes_N: np.ndarray, seeds_N: np.ndarray,
                       options: SamplingOptions) -> dict[str, dict[str, float]]:
    """Per-stage ARI of the maps imposed on generation (extracted from real images) and the samples' own maps.

    References: the tokenizer round trip (reconstruction re-encoded) and unrelated images (chance level).
    """
    tokens = pipe.encode(list(images_NHWC))
    maps_NSP = tokens.labels_BSN
    samples_NHWC = generate_images(pipe, classes_N, seeds_N, options, maps_NSP)
    reconstructions_NHWC = to_uint8(pipe.decode(tokens.final_BNC))
    return {"generated": _stage_ari(maps_NSP, pipe.encode(list(samples_NHWC)).labels_BSN),
            "tokenizer": _stage_ari(maps_NSP, pipe.encode(list(reconstructions_NHWC)).labels_BSN),
            "unrelated": _stage_ari(maps_NSP, maps_NSP.roll(1, dims=0))}


def first_split_agreement(pipe: NVGPipeline, classes_N: np.ndarray, seeds_N: np.ndarray,
                          options: SamplingOptions) -> dict[str, float]:
    """How much the class decides the first split: the share of positions on the same side of the stage-1
    map for the same noise and another class ("other_class"), and for the same class and other noise
    ("other_noise"). Random halvings agree on 0.5; a first split that ignores the class has other_class
    near 1; a class-aware one has other_class well below 1 and other_noise above 0.5."""
    def first_split(classes: np.ndarray, seeds: np.ndarray) -> torch.Tensor:
        stage0 = next(iter(pipe.iter_stages(classes.tolist(), seeds=seeds.tolist(), options=options, preview=False)))
        return stage0.next_labels_BN.cpu()

    base_NP = first_split(classes_N, seeds_N)
    other_class_N = (classes_N + 1 + np.arange(len(classes_N)) % (len(pipe.class_names) - 1)) % len(pipe.class_names)
    return {"other_class": float((first_split(other_class_N, seeds_N) == base_NP).float().mean()),
            "other_noise": float((first_split(classes_N, seeds_N + 1_000_000) == base_NP).float().mean())}


@torch.inference_mode()
def split_loss_by_class(pipe: NVGPipeline, images_NHWC: np.ndarray, classes_N: np.ndarray, seed: int,
                        stages: tuple[int, ...] = (0, 1)) -> dict[str, dict[str, float]]:
    """Flow loss on the bit each stage decides (dim s at stage s) for real images, with their true class and
    with the null class (same noise and times). A structure branch that uses the class has a lower loss
    with the true one."""
    generator = torch.Generator().manual_seed(seed)
    tokens = pipe.encode(list(images_NHWC))
    D, N = pipe.transformer.spec.num_bits, len(images_NHWC)
    target_NPD = bit_codes(tokens.labels_BSN[:, -1], D, D).float() - 1
    true_N = torch.as_tensor(classes_N, device=pipe.device)
    null_N = torch.full_like(true_N, pipe.transformer.config.num_classes)
    out = {}
    for stage in stages:
        losses = {"true_class": [], "null_class": []}
        for _ in range(4):  # four flow times per image
            eps_NPD = torch.randn(target_NPD.shape, generator=generator).to(pipe.device)
            t_N = torch.sigmoid(torch.randn(N, generator=generator)).to(pipe.device)
            stage_N = torch.full((N,), stage, device=pipe.device)
            for name, class_N in (("true_class", true_N), ("null_class", null_N)):
                error = flow_error(pipe.transformer, tokens.canvases_BSNC[:, stage + 1], tokens.labels_BSN[:, stage],
                                   target_NPD, eps_NPD, stage_N, t_N, class_N)
                losses[name].append(error[..., stage].mean().item())
        out[str(stage)] = {name: float(np.mean(v)) for name, v in losses.items()}
    return out


def explained_variance(images_NHWC: np.ndarray, labels_NP: np.ndarray) -> np.ndarray:
    """Share of each image's pixel variance (RGB summed) explained by the regions of a structure map: 1 -
    within-region / total sum of squares, the map's grid cells scaled up to the image."""
    N, H, W, _ = images_NHWC.shape
    grid = int(round(np.sqrt(labels_NP.shape[1])))
    regions_NHW = labels_NP.reshape(N, grid, grid).repeat(H // grid, axis=1).repeat(W // grid, axis=2)
    out = np.empty(N)
    for i, (image_HWC, regions_HW) in enumerate(zip(images_NHWC.astype(np.float64), regions_NHW)):
        pixels_PC, region_P = image_HWC.reshape(-1, 3), regions_HW.reshape(-1)
        count_R = np.bincount(region_P)
        means_RC = np.stack([np.bincount(region_P, weights=c) for c in pixels_PC.T], axis=1) / np.maximum(count_R, 1)[:, None]
        total = ((pixels_PC - pixels_PC.mean(0)) ** 2).sum()
        out[i] = 1 - ((pixels_PC - means_RC[region_P]) ** 2).sum() / total if total > 0 else 1.0
    return out


def layout_following(pipe: NVGPipeline, images_NHWC: np.ndarray, classes_N: np.ndarray, seeds_N: np.ndarray,
                     options: SamplingOptions, stages: tuple[int, ...] = (1, 2, 3)) -> dict[str, dict[str, float]]:
    """For structure imposed from real images at stages 0..k: the share of the generated image's pixel
    variance explained by the stage-k regions ("generated"), beside the reference image itself
    ("reference", what following the layout perfectly looks like) and free samples of the same classes and
    seeds measured against the same regions ("free", chance)."""
    maps_NSP = pipe.encode(list(images_NHWC)).labels_BSN
    free_NHWC = generate_images(pipe, classes_N, seeds_N, options)
    out = {}
    for k in stages:
        regions_NP = maps_NSP[:, k].cpu().numpy()
        generated_NHWC = generate_images(pipe, classes_N, seeds_N, options, maps_NSP[:, :k + 1])
        out[str(k)] = {name: float(explained_variance(images, regions_NP).mean())
                       for name, images in (("generated", generated_NHWC), ("reference", images_NHWC),
                                            ("free", free_NHWC))}
    return out


def photo_images(resolution: int, names: tuple[str, ...] = PHOTOS) -> np.ndarray:
    """scikit-image's bundled sample photos (no download): centre-cropped square, grey made RGB, resized to
    `resolution` (Lanczos), as uint8 (N, H, W, 3)."""
    out = []
    for name in names:
        image = np.asarray(getattr(skimage.data, name)())
        image = np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image[..., :3]
        h, w = image.shape[:2]
        side = min(h, w)
        square = image[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        out.append(np.asarray(Image.fromarray(square).resize((resolution, resolution), Image.LANCZOS)))
    return np.stack(out)


def structure_transfer(pipe: NVGPipeline, evaluator: EmojiNet, images_NHWC: np.ndarray, classes_N: np.ndarray,
                       seeds_N: np.ndarray, options: SamplingOptions, free_options: SamplingOptions | None,
                       source_N: np.ndarray | None = None, stages: tuple[int, ...] = TRANSFER_STAGES) -> dict:
    """The structure of stages 0..k of real images imposed on generation of classes_N (what the Reference
    tab does): per k, the evaluator's accuracy for the requested class ("accuracy"), how often it reads the
    source image's class instead ("source_rate", when source_N is given) and how closely the image follows
    the imposed regions ("layout": explained variance of the stage-k regions, over the reference image's own,
    "layout_ratio"); beside free generation of the same classes and seeds with free_options ("free"; None:
    left out, for sweeps that vary only the imposed runs)."""
    maps_NSP = pipe.encode(list(images_NHWC)).labels_BSN
    out = {}
    if free_options is not None:
        _, free_probs = embed_images(evaluator, generate_images(pipe, classes_N, seeds_N, free_options))
        out["free"] = {"accuracy": float((free_probs.argmax(1) == classes_N).mean())}
    for k in stages:
        regions_NP = maps_NSP[:, k].cpu().numpy()
        generated_NHWC = generate_images(pipe, classes_N, seeds_N, options, maps_NSP[:, :k + 1])
        predicted = embed_images(evaluator, generated_NHWC)[1].argmax(1)
        layout, reference = (float(explained_variance(x, regions_NP).mean()) for x in (generated_NHWC, images_NHWC))
        out[str(k)] = {"accuracy": float((predicted == classes_N).mean()), "layout": layout,
                       "layout_ratio": layout / reference if reference > 0 else float("nan")}
        if source_N is not None:
            out[str(k)]["source_rate"] = float((predicted == source_N).mean())
    return out


def lock_and_swap(pipe: NVGPipeline, sources: NVGResult, locked: int, class_b_B: np.ndarray, seeds_B: np.ndarray,
                  options: SamplingOptions, keep_content: bool = True) -> NVGResult:
    """pipe.regenerate(sources, from_stage=locked + 1, keep_content, class_labels=class_b_B[i], seeds=[seeds_B[i]],
    index=i) for every image i in one batch: stages <= locked keep their structure, and with keep_content
    their codes and class; without it their codes are sampled again as class B."""
    classes_BS = torch.as_tensor(class_b_B)[:, None].repeat(1, pipe.num_stages)
    if keep_content:
        classes_BS[:, :locked + 1] = sources.class_labels_BS[:, :locked + 1].cpu()
    locks = Locks.from_result(sources, locked, None if keep_content else -1)
    return pipe.generate(classes_BS, seeds=seeds_B.tolist(), options=options, locks=locks)


def class_swap(pipe: NVGPipeline, evaluator: EmojiNet, class_a_P: np.ndarray, class_b_P: np.ndarray, seed: int,
               options: SamplingOptions, swap_options: SamplingOptions | None = None,
               stages: tuple[int, ...] = SWAP_LOCKED_STAGES, free: bool = True) -> dict[str, dict[str, float]]:
    """Lock stages <= k of class-A samples and regenerate them as class B, keeping structure and content
    (str(k)) or structure only ("structure_only"); the evaluator's verdicts per k, beside the sources and
    free generation of class B with the seeds of k = 1 ("free_b", unless free is False). swap_options: for
    the swapped runs (default: options)."""
    swap_options = swap_options or options
    seeds_P = seed + np.arange(len(class_a_P))
    sources = pipe.generate(class_a_P.tolist(), seeds=seeds_P.tolist(), options=options)
    _, source_probs = embed_images(evaluator, to_uint8(sources.images))
    out = {"source": {"class_a_accuracy": float((source_probs.argmax(1) == class_a_P).mean()),
                      "class_b_probability": float(source_probs[np.arange(len(class_b_P)), class_b_P].mean())},
           "structure_only": {}}
    if free:
        _, free_probs = embed_images(evaluator, generate_images(pipe, class_b_P, seeds_P + 1000, options))
        out["free_b"] = {"class_b_accuracy": float((free_probs.argmax(1) == class_b_P).mean())}
    for keep_content, into in ((True, out), (False, out["structure_only"])):
        for k in stages:
            swapped = lock_and_swap(pipe, sources, k, class_b_P, seeds_P + 1000 * k, swap_options, keep_content)
            _, probs = embed_images(evaluator, to_uint8(swapped.images))
            predicted = probs.argmax(1)
            into[str(k)] = {"class_b_accuracy": float((predicted == class_b_P).mean()),
                            "class_b_probability": float(probs[np.arange(len(class_b_P)), class_b_P].mean()),
                            "class_a_rate": float((predicted == class_a_P).mean())}
    return out


def transfer_and_swap(pipe: NVGPipeline, evaluator: EmojiNet, data: EmojiDataset, num_pairs: int, seed: int,
                      options: SamplingOptions, free_options: SamplingOptions | None = None,
                      swap_stages: tuple[int, ...] = SWAP_LOCKED_STAGES,
                      parts: tuple[str, ...] = ("transfer", "swap")) -> dict:
    """Structure transfer and class swap with `options` for the runs that impose stages: structure of
    held-out emoji imposed on another class ("transfer_heldout"), of scikit-image's photos on every class in
    turn ("transfer_photos", num_pairs runs), and class swaps of num_pairs generated pairs in both lock modes
    ("class_swap"); beside free generation with free_options (None: left out). Fixed by `seed`, so settings
    compare on the same images, classes and seeds; `parts` leaves out the transfer or the swap."""
    rng = np.random.default_rng(seed)
    C = len(CLASSES)
    _, held_idx = split_by_emoji(data.emoji)
    held_lab = held_idx[data.label[held_idx] >= 0]
    picked = _spread(held_lab, min(num_pairs, len(held_lab)))
    source_N = data.label[picked].astype(int)
    target_N = (source_N + rng.integers(1, C, len(picked))) % C  # drawn whatever the parts: the swap's draws follow
    report = {}
    if "transfer" in parts:
        report["transfer_heldout"] = structure_transfer(pipe, evaluator, data.images[picked], target_N,
                                                        seed + 300_000 + np.arange(len(picked)), options, free_options,
                                                        source_N)
        photos = photo_images(pipe.tokenizer.spec.resolution)
        runs = np.arange(num_pairs)
        report["transfer_photos"] = structure_transfer(pipe, evaluator, photos[runs % len(photos)],
                                                       (runs * 5 + runs // len(photos)) % C, seed + 400_000 + runs,
                                                       options, free_options)
    if "swap" in parts:
        class_a_P = rng.choice(C, num_pairs)
        class_b_P = (class_a_P + rng.integers(1, C, num_pairs)) % C
        report["class_swap"] = class_swap(pipe, evaluator, class_a_P, class_b_P, seed + 200_000, free_options or options,
                                          options, swap_stages, free=free_options is not None)
    return report


def _per_class_accuracy(probs_NK: np.ndarray, labels_N: np.ndarray) -> dict[str, float | None]:
    predicted = probs_NK.argmax(1)
    return {name: float((predicted[labels_N == c] == c).mean()) if (labels_N == c).any() else None
            for c, name in enumerate(CLASSES)}


def _mean(values: dict[str, float | None]) -> float:
    return float(np.mean([v for v in values.values() if v is not None]))


def _pixel_nn_rmse(query_NHWC: np.ndarray, reference_MHWC: np.ndarray) -> np.ndarray:
    """RMSE in uint8 levels from every query image to its nearest reference image."""
    query_NP, reference_MP = (images.reshape(len(images), -1).astype(np.float32) for images in (query_NHWC, reference_MHWC))
    return nearest_neighbour_distance(query_NP, reference_MP) / np.sqrt(query_NP.shape[1])


def evaluate(pipe: NVGPipeline, evaluator: EmojiNet, data: EmojiDataset, num_samples: int = 256,
             options: SamplingOptions | None = None, seed: int = 0, sections: tuple[str, ...] = SECTIONS) -> dict:
    """The figures of `nvg eval` as one flat-ish dict (see the module docstring): those of `sections` (SECTIONS:
    each measured alike whatever else is asked, on the same images and seeds); progress on stderr."""
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown or not sections:
        raise ValueError(f"--sections takes some of {', '.join(SECTIONS)}; got {', '.join(unknown) or 'none'}")
    if list(pipe.class_names) != list(CLASSES) or pipe.tokenizer.config.resolution != evaluator.config.resolution:
        raise ValueError("nvg eval measures models of the emoji-32 classes at the evaluator's resolution "
                         f"({evaluator.config.resolution} px); this model has {len(pipe.class_names)} classes at "
                         f"{pipe.tokenizer.config.resolution} px (a model of its own classes: pass its folder "
                         "dataset as --data)")
    if num_samples < 4:
        raise ValueError(f"--num-samples must be at least 4 (precision/recall use 3 neighbours), got {num_samples}")
    start, seconds = time.perf_counter(), {}

    def lap(name: str) -> None:
        seconds[name] = round(time.perf_counter() - start - sum(seconds.values()), 1)
        print(f"nvg eval: {name} done ({seconds[name]} s)", file=sys.stderr, flush=True)

    rng = np.random.default_rng(seed)
    options = options or pipe.default_options
    train_idx, held_idx = split_by_emoji(data.emoji)
    train_lab, held_lab = train_idx[data.label[train_idx] >= 0], held_idx[data.label[held_idx] >= 0]
    report = {"model": pipe.name, "feature_space": "EmojiNet", "num_samples": num_samples, "sampling": asdict(options),
              "seed": seed, "sections": [name for name in SECTIONS if name in sections]}

    if "tokenizer" in sections:
        tokenizer_idx = _spread(held_idx, min(num_samples, len(held_idx)))
        psnr_S, ssim_S = tokenizer_quality(pipe, data.images[tokenizer_idx])
        report.update(psnr=psnr_S[-1], ssim=ssim_S[-1], psnr_per_stage=psnr_S, ssim_per_stage=ssim_S,
                      tokenizer_images=len(tokenizer_idx))
        lap("tokenizer")

    classes_N = np.arange(num_samples) % len(CLASSES)
    if "structure" in sections:
        _structure(pipe, data, held_lab, classes_N, num_samples, seed, options, report)
        lap("structure")
    if "transfer" in sections or "swap" in sections:
        report["transfer_pairs"] = max(1, num_samples // 4)
        transfer_options = replace(pipe.transfer_options, flow_steps=options.flow_steps)  # --flow-steps applies to both
        report["transfer_sampling"] = asdict(transfer_options)
        parts = tuple(name for name in ("transfer", "swap") if name in sections)
        report.update(transfer_and_swap(pipe, evaluator, data, report["transfer_pairs"], seed, transfer_options,
                                        options, parts=parts))
        lap(" and ".join(parts))
    if "quality" in sections:
        samples_NHWC = generate_images(pipe, classes_N, seed + np.arange(num_samples), options)
        lap("sampling")
        _quality(evaluator, data, train_lab, held_lab, samples_NHWC, classes_N, num_samples, seed, rng, report)
        lap("evaluator metrics")
    report["seconds"] = {**seconds, "total": round(time.perf_counter() - start, 1)}
    return _rounded(report)


def _structure(pipe: NVGPipeline, data: EmojiDataset, held_lab: np.ndarray, classes_N: np.ndarray, num_samples: int,
               seed: int, options: SamplingOptions, report: dict) -> None:
    """The structure section: fidelity, layout following, the first split and the split loss, into `report`."""
    structure_idx = _spread(held_lab, max(2, num_samples // 8))  # two at least: "unrelated" pairs them
    report["structure_images"] = len(structure_idx)
    structure_args = (data.images[structure_idx], data.label[structure_idx].astype(int),
                      seed + 100_000 + np.arange(len(structure_idx)), options)
    report["structure_ari"] = structure_fidelity(pipe, *structure_args)
    report["layout_following"] = layout_following(pipe, *structure_args)
    report["first_split_agreement"] = first_split_agreement(pipe, classes_N, seed + np.arange(num_samples), options)
    split_idx = _spread(held_lab, min(len(held_lab), num_samples // 2))
    report["split_loss"] = split_loss_by_class(pipe, data.images[split_idx], data.label[split_idx].astype(int), seed)


def _quality(evaluator: EmojiNet, data: EmojiDataset, train_lab: np.ndarray, held_lab: np.ndarray,
             samples_NHWC: np.ndarray, classes_N: np.ndarray, num_samples: int, seed: int, rng: np.random.Generator,
             report: dict) -> None:
    """The quality section: FD, KID, precision/recall, class accuracy and memorisation, into `report`."""
    train_F, _ = embed_images(evaluator, data.images[train_lab])
    held_F, held_probs = embed_images(evaluator, data.images[held_lab])
    samples_F, samples_probs = embed_images(evaluator, samples_NHWC)
    train_labels, per_class = data.label[train_lab], -(-num_samples // len(CLASSES))
    half_a, half_b = split_by_emoji(data.emoji[train_lab], held_out_fraction=0.5, seed=1)
    reference_F = train_F[_balanced(half_a, train_labels, REFERENCE_PER_CLASS, rng)]
    compared = {"": samples_F, "_real_vs_real": train_F[_balanced(half_b, train_labels, per_class, rng)],
                "_heldout_vs_train": held_F[_balanced(np.arange(len(held_lab)), data.label[held_lab], per_class, rng)]}
    report.update(reference_images=len(reference_F), real_vs_real_images=len(compared["_real_vs_real"]),
                  heldout_images=len(compared["_heldout_vs_train"]))
    scores = {suffix: (frechet_distance(features_F, reference_F), kid(features_F, reference_F, seed=seed),
                       *precision_recall(reference_F, features_F)) for suffix, features_F in compared.items()}
    for i, name in enumerate(("fd", "kid", "precision", "recall")):  # each beside its reference values
        report.update({f"{name}{suffix}": values[i] for suffix, values in scores.items()})

    per_class_samples = _per_class_accuracy(samples_probs, classes_N)
    per_class_real = _per_class_accuracy(held_probs, data.label[held_lab])
    report.update(class_accuracy=_mean(per_class_samples), class_accuracy_real=_mean(per_class_real),
                  class_accuracy_per_class=per_class_samples, class_accuracy_real_per_class=per_class_real)

    report.update(nn_distance=float(np.median(nearest_neighbour_distance(samples_F, train_F))),
                  nn_distance_real=float(np.median(nearest_neighbour_distance(held_F, train_F))),
                  nn_pixel_rmse=float(np.median(_pixel_nn_rmse(samples_NHWC, data.images[train_lab]))),
                  nn_pixel_rmse_real=float(np.median(_pixel_nn_rmse(data.images[held_lab], data.images[train_lab]))))


FOLDER_SECTIONS = ("tokenizer", "quality")  # what applies to a model of other classes than emoji-32's


def evaluate_folder(pipe: NVGPipeline, evaluator: EmojiNet, data: FolderDataset, num_samples: int = 256,
                    options: SamplingOptions | None = None, seed: int = 0,
                    sections: tuple[str, ...] = FOLDER_SECTIONS) -> dict:
    """`nvg eval` for a model of its own classes against a folder dataset (nvg data folder) of them: the
    tokenizer's PSNR/SSIM per stage on the dataset's images, and the samples' FD, KID and precision/recall
    against the dataset in the frozen evaluator's feature space. That network was trained on emoji: for
    other images it is a generic yardstick, not an ImageNet-style FID (the report says so). Beside each
    figure, the same for one half of the dataset against the other (`_real_vs_real`)."""
    wrong = sorted(set(sections) - set(FOLDER_SECTIONS))
    if wrong or not sections:
        raise ValueError(f"a model of other classes than emoji-32's is measured by the sections "
                         f"{', '.join(FOLDER_SECTIONS)} only; {', '.join(wrong) or 'none'} asked")
    if list(pipe.class_names) != list(data.classes):
        raise ValueError(f"the dataset's classes ({', '.join(data.classes[:8])}...) are not the model's "
                         f"({', '.join(pipe.class_names[:8])}...): pass the folder dataset it was trained on")
    if num_samples < 4 or len(data.label) < 8:
        raise ValueError("--num-samples must be at least 4, and the dataset needs at least 8 images")
    start = time.perf_counter()
    options = options or pipe.default_options
    picked = _spread(np.arange(len(data.label)), min(num_samples, len(data.label)))
    report = {"model": pipe.name, "data": f"{len(data.label)} images of {len(data.classes)} classes",
              "feature_space": "EmojiNet (trained on emoji: a generic yardstick for these images, not an FID)",
              "num_samples": num_samples, "sampling": asdict(options), "seed": seed,
              "sections": [name for name in FOLDER_SECTIONS if name in sections]}
    if "tokenizer" in sections:  # the images it was trained on, unless the dataset is a held-out one
        psnr_S, ssim_S = tokenizer_quality(pipe, np.asarray(data.images[picked]))
        report.update(psnr=psnr_S[-1], ssim=ssim_S[-1], psnr_per_stage=psnr_S, ssim_per_stage=ssim_S,
                      tokenizer_images=len(picked))
    if "quality" in sections:
        classes_N = np.arange(num_samples) % len(pipe.class_names)
        samples_NHWC = generate_images(pipe, classes_N, seed + np.arange(num_samples), options)
        size = evaluator.config.resolution
        real_F, _ = embed_images(evaluator, _resized(np.asarray(data.images), size))
        samples_F, _ = embed_images(evaluator, _resized(samples_NHWC, size))
        half_a, half_b = real_F[0::2], real_F[1::2]
        for suffix, features_F, reference_F in (("", samples_F, real_F), ("_real_vs_real", half_b, half_a)):
            precision, recall = precision_recall(reference_F, features_F)
            report.update({f"fd{suffix}": frechet_distance(features_F, reference_F),
                           f"kid{suffix}": kid(features_F, reference_F, seed=seed),
                           f"precision{suffix}": precision, f"recall{suffix}": recall})
    report["seconds"] = round(time.perf_counter() - start, 1)
    return _rounded(report)


def _resized(images_NHWC: np.ndarray, size: int) -> np.ndarray:
    """Images at size x size (area interpolation), as the evaluator reads them."""
    if images_NHWC.shape[1:3] == (size, size):
        return images_NHWC
    return np.stack([np.asarray(Image.fromarray(image).resize((size, size), Image.BOX)) for image in images_NHWC])


def _rounded(value):
    """Floats rounded to 5 significant digits, through dicts and lists."""
    if isinstance(value, float):
        return float(f"{value:.5g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def load_evaluator(folder: str | Path) -> EmojiNet:
    """The frozen evaluator of a model folder, with a clear error when it has none."""
    if not (Path(folder) / "evaluator" / "config.json").is_file():
        raise FileNotFoundError(f"no evaluator in {folder}; train one with "
                                f"`nvg train evaluator --data data/emoji64.npz --out {folder}`")
    return EmojiNet.from_pretrained(folder, subfolder="evaluator", dtype=torch.float32).eval()


def run(args: argparse.Namespace) -> None:
    """Load the model, the evaluator and the data, evaluate, and print the report."""
    pipe = NVGPipeline.from_pretrained(args.model, device=args.device)
    evaluator = load_evaluator(args.evaluator or BUNDLED_MODEL).to(pipe.device)
    options = pipe.default_options if args.flow_steps is None else replace(pipe.default_options, flow_steps=args.flow_steps)
    if args.data.is_dir():  # a folder dataset: a model of its own classes
        sections = FOLDER_SECTIONS if args.sections is None else tuple(args.sections)
        report = evaluate_folder(pipe, evaluator, load_folder_dataset(args.data), args.num_samples, options,
                                 args.seed, sections)
    else:
        report = evaluate(pipe, evaluator, load_emoji_dataset(args.data), args.num_samples, options, args.seed,
                          SECTIONS if args.sections is None else tuple(args.sections))
    if args.json:
        print(json.dumps(report))
    else:
        print("\n".join(f"{key:26} {json.dumps(value)}" for key, value in report.items()))
