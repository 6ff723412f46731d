"""The frozen evaluator (EmojiNet) and the sample-quality metrics of `nvg eval`, in its feature space.

No standard FID/KID/LPIPS backbone can be downloaded offline, so this project trains its own small
evaluator on the emoji data and reports every distribution metric in its feature space, under its own
name: FD-EmojiNet (Frechet distance), KID-EmojiNet, precision/recall, never "FID". EmojiNet is a 5-block
CNN at 64 px with three heads (the 32 classes, the emoji, the art style); the features are its pooled
last-block activations. It trains on the training split only (data.emoji.split_by_emoji) and is never
used as a training signal for the generator. `nvg train evaluator --data data/emoji64.npz --out DIR`
trains it; it is stored as the diffusers model in the subfolder evaluator/ of a model folder.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from math import cos, pi
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from torch import nn

from .data.emoji import CLASSES, NO_FLIP_CLASSES, STYLES, load_emoji_dataset, split_by_emoji
from .modeling import SpecModel
from .distributed import in_process_group
from .trainer import Run


# --------------------------------------------------------------------------------------------------
# The evaluator network
# --------------------------------------------------------------------------------------------------


@dataclass
class EmojiNetConfig:
    """A 5-block CNN: block i halves the resolution (except the last) with a stride-2 3x3 conv, then one more conv."""

    resolution: int = 64
    channels: tuple[int, ...] = (32, 64, 128, 192, 192)
    num_classes: int = len(CLASSES)
    num_styles: int = len(STYLES)
    num_emoji: int = 1727  # emoji of the training split (an auxiliary head: finer features)

    def __post_init__(self):
        self.channels = tuple(self.channels)  # JSON gives a list


class EmojiNet(SpecModel):
    """Pixels in [-1, 1] -> (features, class logits, emoji logits, style logits); a diffusers model."""

    spec_class = EmojiNetConfig

    @register_to_config
    def __init__(self, resolution: int, channels: Sequence[int], num_classes: int, num_styles: int, num_emoji: int):
        super().__init__()
        config = self._build_spec()
        layers, cin = [], 3
        for i, c in enumerate(config.channels):
            stride = 1 if i == len(config.channels) - 1 else 2
            layers += [nn.Conv2d(cin, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            cin = c
        self.backbone = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.class_head = nn.Linear(cin, config.num_classes)
        self.emoji_head = nn.Linear(cin, config.num_emoji)
        self.style_head = nn.Linear(cin, config.num_styles)

    @property
    def feature_dim(self) -> int:
        return self.spec.channels[-1]

    def forward(self, pixels_BCHW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        features_BD = self.backbone(pixels_BCHW)
        return features_BD, self.class_head(features_BD), self.emoji_head(features_BD), self.style_head(features_BD)



def _pixels(images_BHWC_uint8: torch.Tensor) -> torch.Tensor:
    return images_BHWC_uint8.permute(0, 3, 1, 2).float() / 127.5 - 1


@torch.inference_mode()
def embed_images(evaluator: EmojiNet, images_NHWC: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W, 3) -> (features (N, D) float64, class probabilities (N, classes))."""
    evaluator.eval()
    device = next(evaluator.parameters()).device
    features, probs = [], []
    for start in range(0, len(images_NHWC), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images_NHWC[start:start + batch_size])).to(device)
        features_BD, class_BK, _, _ = evaluator(_pixels(batch))
        features.append(features_BD.double().cpu().numpy())
        probs.append(class_BK.softmax(-1).double().cpu().numpy())
    return np.concatenate(features), np.concatenate(probs)


# --------------------------------------------------------------------------------------------------
# Metrics (numpy, float64)
# --------------------------------------------------------------------------------------------------


def frechet_distance(a_ND: np.ndarray, b_MD: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (FD-EmojiNet on EmojiNet features).

    |mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2), with symmetric eigendecompositions.
    """
    mu_a, mu_b = a_ND.mean(0), b_MD.mean(0)
    cov_a, cov_b = np.cov(a_ND, rowvar=False), np.cov(b_MD, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    sqrt_a = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    cross = np.sqrt(np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clip(min=0)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def kid(a_ND: np.ndarray, b_MD: np.ndarray, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> float:
    """Kernel inception distance: the unbiased MMD^2 with the kernel (x.y / D + 1)^3, averaged over subsets."""
    rng = np.random.default_rng(seed)
    n = min(len(a_ND), len(b_MD), subset_size)
    D = a_ND.shape[1]
    values = []
    for _ in range(num_subsets):
        x = a_ND[rng.choice(len(a_ND), n, replace=False)]
        y = b_MD[rng.choice(len(b_MD), n, replace=False)]
        k_xx, k_yy, k_xy = ((x @ x.T / D + 1) ** 3, (y @ y.T / D + 1) ** 3, (x @ y.T / D + 1) ** 3)
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
        values.append(within - 2 * k_xy.mean())
    return float(np.mean(values))


def pairwise_distances(a_ND: np.ndarray, b_MD: np.ndarray) -> np.ndarray:
    """Euclidean distances (N, M)."""
    squared = (a_ND**2).sum(1)[:, None] + (b_MD**2).sum(1)[None, :] - 2 * a_ND @ b_MD.T
    return np.sqrt(squared.clip(min=0))


def nearest_neighbour_distance(query_ND: np.ndarray, reference_MD: np.ndarray, chunk: int = 256) -> np.ndarray:
    """For every query row, the distance to its nearest reference row, (N,)."""
    return np.concatenate([pairwise_distances(query_ND[i:i + chunk], reference_MD).min(1)
                           for i in range(0, len(query_ND), chunk)])


def precision_recall(real_ND: np.ndarray, fake_MD: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (k-NN manifolds, Kynkaanniemi et al. 2019).

    Precision: the fraction of fake samples inside the real manifold (the union of balls around every
    real sample reaching its k-th nearest real neighbour); recall: the same with the roles swapped.
    """
    def inside(points_PD: np.ndarray, centres_CD: np.ndarray) -> float:
        radius_C = np.sort(pairwise_distances(centres_CD, centres_CD), axis=1)[:, k]  # column 0 is the point itself
        return float((pairwise_distances(points_PD, centres_CD) <= radius_C[None]).any(1).mean())

    return inside(fake_MD, real_ND), inside(real_ND, fake_MD)


def adjusted_rand_index(labels_a: np.ndarray, labels_b: np.ndarray) -> float:
    """Adjusted Rand index of two partitions of the same items (1: identical up to relabelling, ~0: chance).

    Two trivial partitions that agree (one cluster each, or every item alone) give 1.
    """
    _, a = np.unique(np.asarray(labels_a).ravel(), return_inverse=True)
    _, b = np.unique(np.asarray(labels_b).ravel(), return_inverse=True)
    if len(a) != len(b):
        raise ValueError(f"the partitions cover {len(a)} and {len(b)} items")
    contingency = np.zeros((a.max() + 1, b.max() + 1), dtype=np.int64)
    np.add.at(contingency, (a, b), 1)
    both, in_a, in_b = _pairs(contingency), _pairs(contingency.sum(1)), _pairs(contingency.sum(0))
    total = _pairs(np.array(len(a)))
    expected = in_a * in_b / total if total else 0.0
    best = (in_a + in_b) / 2
    return 1.0 if best == expected else float((both - expected) / (best - expected))


def _pairs(counts: np.ndarray) -> float:
    """Number of unordered pairs within groups of the given sizes."""
    return float((counts * (counts - 1) / 2).sum())


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


def augment(pixels_BCHW: torch.Tensor, flip_ok_B: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random scale (0.85-1.15), shift (up to 4 px at 64 px) and, where flip_ok_B, a mirror; edges extended."""
    B = len(pixels_BCHW)
    scale_B = 0.85 + 0.3 * torch.rand(B, generator=generator)
    shift_B2 = (torch.rand(B, 2, generator=generator) * 2 - 1) * 8 / pixels_BCHW.shape[-1]
    flip_B = torch.where((torch.rand(B, generator=generator) < 0.5) & flip_ok_B.cpu(), -1.0, 1.0)
    theta_B23 = torch.zeros(B, 2, 3)
    theta_B23[:, 0, 0] = flip_B / scale_B
    theta_B23[:, 1, 1] = 1 / scale_B
    theta_B23[:, :, 2] = shift_B2
    grid = F.affine_grid(theta_B23.to(pixels_BCHW.device), list(pixels_BCHW.shape), align_corners=False)
    return F.grid_sample(pixels_BCHW, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _schedule(progress: float, peak: float, warmup: float = 0.03) -> float:
    """Linear warm-up over the first 3% of training, then cosine decay to zero (progress in [0, 1])."""
    if progress < warmup:
        return peak * (progress + 1e-3) / warmup
    return peak * 0.5 * (1 + cos(pi * min(1.0, (progress - warmup) / (1 - warmup))))


def class_accuracy(evaluator: EmojiNet, images_NHWC: np.ndarray, labels_N: np.ndarray) -> float:
    """Fraction of images whose most likely class is their label."""
    _, probs_NK = embed_images(evaluator, images_NHWC)
    return float((probs_NK.argmax(1) == labels_N).mean())


@in_process_group
def train_evaluator(args) -> None:
    """Cross-entropy on the class (labelled images), emoji and style heads, on the training split only.

    The learning-rate schedule follows whichever runs out first of --steps and --max-minutes, so a
    time-limited run also ends at a low learning rate. Held-out class accuracy is logged at the end. Under
    torchrun each process augments the global batch alike and keeps its shard; BatchNorm normalises each
    shard by its own statistics (DistributedDataParallel keeps the running statistics of the main process).
    """
    with Run(args, "evaluator", log_name="logs/evaluator.jsonl") as run:
        data = load_emoji_dataset(args.data)
        train_idx, held_idx = split_by_emoji(data.emoji)
        emoji_names, emoji_N = np.unique(data.emoji[train_idx], return_inverse=True)
        style_N = np.array([STYLES.index(s) for s in data.style[train_idx]])
        label_N = data.label[train_idx].astype(np.int64)
        flip_ok_N = (label_N >= 0) & ~np.isin(label_N, [CLASSES.index(c) for c in NO_FLIP_CLASSES])
        images = torch.from_numpy(data.images[train_idx])
        targets = {name: torch.from_numpy(values) for name, values in
                   (("class", label_N), ("emoji", emoji_N), ("style", style_N), ("flip_ok", flip_ok_N))}
        config = EmojiNetConfig(**run.spec) if run.spec else EmojiNetConfig(num_emoji=len(emoji_names))
        model = EmojiNet.from_spec(config).to(run.device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
        run.track(asdict(model.spec), model=model, optimizer=opt)
        trained = run.procs.wrap(model)
        budget = args.max_minutes * 60
        step = run.start_step
        for step in run.steps():
            progress = max(step / args.steps, (time.time() - run.started) / budget)
            for group in opt.param_groups:
                group["lr"] = _schedule(min(progress, 1.0), args.lr)
            idx_B = torch.randint(len(images), (args.batch_size,), generator=run.generator)
            x_BCHW = run.procs.shard(augment(_pixels(images[idx_B]), targets["flip_ok"][idx_B], run.generator))
            idx_B = run.procs.shard(idx_B)
            with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=args.bf16 and run.device.type == "cuda"):
                _, class_BK, emoji_BE, style_BT = trained(x_BCHW.to(run.device))
            class_loss = F.cross_entropy(class_BK.float(), targets["class"][idx_B].to(run.device), ignore_index=-1,
                                         label_smoothing=0.1)
            emoji_loss = F.cross_entropy(emoji_BE.float(), targets["emoji"][idx_B].to(run.device), label_smoothing=0.1)
            style_loss = F.cross_entropy(style_BT.float(), targets["style"][idx_B].to(run.device), label_smoothing=0.1)
            loss = class_loss + emoji_loss + 0.5 * style_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % args.log_every == 0:
                run.log(step, loss=loss.item(), class_loss=class_loss.item(), emoji_loss=emoji_loss.item(),
                        style_loss=style_loss.item(), lr=opt.param_groups[0]["lr"])
            if run.end_of_step(step, lambda: model.save_pretrained(run.out / "evaluator")) or progress >= 1:
                break
        model.eval()  # every process measures, so that the logged figure is averaged like the losses
        held_labelled = held_idx[data.label[held_idx] >= 0]
        held_accuracy = class_accuracy(model, data.images[held_labelled], data.label[held_labelled])
        run.log(step, held_out_class_accuracy=held_accuracy)
        if run.procs.is_main:
            model.save_pretrained(run.out / "evaluator")
            print(f"saved {run.out} (held-out class accuracy {held_accuracy:.3f})", file=sys.stderr)
