"""Balanced binary structure trees on the latent grid.

A structure tree over N positions (N a power of two, 256 for a 16x16 grid) has S = log2(N) + 1 stages.
Stage i partitions the positions into 2^i clusters of exactly N / 2^i positions, labelled 0 .. 2^i - 1,
and every stage refines the previous one: label_i = label_{i+1} // 2. Read a label in binary, most
significant bit first, and it is the path from the root.

This module builds trees from latents (the official greedy pairing), checks them, projects arbitrary
region maps (sketches) onto the nearest balanced tree, and renders maps for people.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
import torch
from skimage.segmentation import find_boundaries


def num_stages(num_positions: int) -> int:
    """Stages of a tree over `num_positions` positions (a power of two): log2(N) + 1."""
    depth = int(math.log2(num_positions))
    if num_positions < 1 or 2**depth != num_positions:
        raise ValueError(f"the number of positions must be a power of two, got {num_positions}")
    return depth + 1


# --------------------------------------------------------------------------------------------------
# Building trees: the official greedy bottom-up pairing (reference section 1.6)
# --------------------------------------------------------------------------------------------------


def _greedy_pairs(points_BMC: torch.Tensor) -> torch.Tensor:
    """Pair M cluster representatives greedily by L2 distance, closest pair first.

    Returns pairs_BP2 (P = M/2) in merge order; each pair is (i, j) with i < j. This is the result of
    repeatedly taking the global minimum of the distance matrix (ties: smallest row-major index) and
    blanking both rows and columns, without updating distances. It is computed by rounds of mutual
    nearest neighbours ("locally dominant" edges), which give the same matching for any strict edge
    order, then sorted by (distance, row-major index) to recover the merge order.
    """
    B, M, _ = points_BMC.shape
    dist_BMM = torch.cdist(points_BMC, points_BMC, p=2)
    dist_BMM.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    free_BMM = dist_BMM.clone()
    partner_BM = torch.full((B, M), -1, dtype=torch.long, device=points_BMC.device)
    idx_M = torch.arange(M, device=points_BMC.device)
    while bool((partner_BM < 0).any()):
        # In row v the tie order of row-major indices is the column order, so argmin's first-index
        # rule breaks ties exactly as the official global argmin does.
        best_BM = free_BMM.argmin(dim=2)
        mutual_BM = (best_BM.gather(1, best_BM) == idx_M) & (partner_BM < 0)
        partner_BM = torch.where(mutual_BM, best_BM, partner_BM)
        taken_BM = partner_BM >= 0
        free_BMM.masked_fill_(taken_BM[:, :, None] | taken_BM[:, None, :], float("inf"))
    first_BP = idx_M.expand(B, M)[idx_M < partner_BM].view(B, M // 2)
    second_BP = partner_BM.gather(1, first_BP)
    pair_dist_BP = dist_BMM[torch.arange(B, device=points_BMC.device)[:, None], first_BP, second_BP]
    # Sort by distance, ties by row-major index (first * M + second): a stable sort of the key order.
    key_order_BP = (first_BP * M + second_BP).argsort(dim=1)
    pair_dist_BP = pair_dist_BP.gather(1, key_order_BP)
    order_BP = key_order_BP.gather(1, pair_dist_BP.argsort(dim=1, stable=True))
    return torch.stack([first_BP.gather(1, order_BP), second_BP.gather(1, order_BP)], dim=2)


def build_tree(latent_BNC: torch.Tensor) -> torch.Tensor:
    """Cluster a latent grid into a balanced binary tree; returns labels_BSN (int64, S = log2(N) + 1).

    Bottom-up: each round pairs the current clusters greedily by the distance of their means (means of
    the original vectors), halving their number, until one cluster is left. Top-down relabelling then
    gives the children of label p the labels 2p and 2p + 1, the child merged earlier in its round getting
    2p. Matches the authors' implementation label for label.
    """
    if latent_BNC.ndim != 3 or not latent_BNC.is_floating_point():
        raise ValueError(f"build_tree expects a float tensor (B, N, C), got {tuple(latent_BNC.shape)}")
    B, N, C = latent_BNC.shape
    S = num_stages(N)
    device = latent_BNC.device
    points_BNC = latent_BNC.detach()
    members_BMK = torch.arange(N, device=device).expand(B, N)[:, :, None]  # cluster -> positions
    rounds = []  # per round: pairs_BP2 of previous-round cluster ids, in merge order
    for _ in range(S - 1):
        M, K = members_BMK.shape[1:]
        gathered_BMKC = points_BNC.gather(1, members_BMK.reshape(B, M * K, 1).expand(-1, -1, C))
        means_BMC = gathered_BMKC.view(B, M, K, C).mean(dim=2)
        pairs_BP2 = _greedy_pairs(means_BMC)
        rounds.append(pairs_BP2)
        members_BMK = members_BMK.gather(1, pairs_BP2.reshape(B, M, 1).expand(-1, -1, K)).view(B, M // 2, 2 * K)
    # Top-down: the root is 0; the children (i, j) of a cluster labelled p become 2p and 2p + 1.
    label_BM = torch.zeros(B, 1, dtype=torch.long, device=device)
    for pairs_BP2 in reversed(rounds):
        child_label_BP2 = torch.stack([2 * label_BM, 2 * label_BM + 1], dim=2)
        label_BM = torch.empty(B, 2 * pairs_BP2.shape[1], dtype=torch.long, device=device)
        label_BM.scatter_(1, pairs_BP2.reshape(B, -1), child_label_BP2.reshape(B, -1))
    shifts_S = torch.arange(S - 1, -1, -1, device=device)
    return label_BM[:, None, :] >> shifts_S[None, :, None]


# --------------------------------------------------------------------------------------------------
# Bit codes and validation
# --------------------------------------------------------------------------------------------------


def bit_codes(labels_BN: torch.Tensor, stage: int, depth: int) -> torch.Tensor:
    """Per-position code of a stage-`stage` map, (B, N, depth) int64: 0/2 for a decided bit, 1 undecided.

    Dimension k holds bit k of the label counted from its most significant bit (k = 0 is the first
    split). This is the form structure-aware RoPE uses; subtract 1 for the flow's -1/0/+1 form.
    """
    k_D = torch.arange(depth, device=labels_BN.device)
    shift_D = (stage - 1 - k_D).clamp(min=0)
    bits_BND = (labels_BN[..., None] >> shift_D) & 1
    return torch.where(k_D < stage, 2 * bits_BND, torch.ones_like(bits_BND))


def validate(labels: torch.Tensor | np.ndarray, num_positions: int | None = None) -> None:
    """Raise ValueError unless `labels` (S', N) or (B, S', N) are the first S' stages of a balanced tree.

    Checks: integer values, stage i in [0, 2^i), every stage-i cluster has exactly N / 2^i positions,
    and stage i = stage i+1 // 2. `num_positions`, when given, must equal N.
    """
    arr = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"structure labels must have shape (stages, N) or (B, stages, N), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"structure labels must be integers, got dtype {arr.dtype}")
    _, stages, N = arr.shape
    if num_positions is not None and N != num_positions:
        raise ValueError(f"structure map has {N} positions, expected {num_positions}")
    if stages > num_stages(N):
        raise ValueError(f"{stages} stages given, but a tree over {N} positions has {num_stages(N)}")
    for i in range(stages):
        stage_BN = arr[:, i]
        if stage_BN.min() < 0 or stage_BN.max() >= 2**i:
            raise ValueError(f"stage {i} labels must lie in [0, {2**i}), got [{stage_BN.min()}, {stage_BN.max()}]")
        counts = np.stack([np.bincount(row, minlength=2**i) for row in stage_BN])
        if (counts != N // 2**i).any():
            raise ValueError(f"stage {i} clusters must each cover {N // 2**i} positions; sizes seen: "
                             f"{sorted(set(counts.ravel().tolist()))}")
        if i > 0 and (arr[:, i] // 2 != arr[:, i - 1]).any():
            raise ValueError(f"stage {i} does not refine stage {i - 1} (label // 2 must equal the parent)")


# --------------------------------------------------------------------------------------------------
# Projecting arbitrary region maps (sketches, references) onto balanced trees
# --------------------------------------------------------------------------------------------------


@dataclass
class Projection:
    """A balanced tree fitted to a region map.

    labels: (stage + 1, G*G) int64, stages 0..stage of a valid tree on the G x G grid.
    regions: (G, G) the drawn regions resampled to the grid (values 0..R-1, by first appearance).
    agreement: the fraction of grid cells whose stage-`stage` cluster has the cell's own region as its
    majority region (1.0 = every drawn boundary survived).
    ceiling: the highest agreement any balanced tree reaches at that stage (agreement_ceiling).
    """

    labels: np.ndarray
    regions: np.ndarray
    agreement: float
    ceiling: float

    def summary(self) -> str:
        """One line for people: the agreement, and the stage's ceiling when the drawing is finer than it."""
        text = f"agreement with the drawing: {self.agreement:.0%}"
        if self.ceiling < 1:
            text += (f" (at most {self.ceiling:.0%} at stage {len(self.labels) - 1}: its clusters are too large for "
                     "the smaller regions; a later stage keeps more)")
        return text


def _to_grid(region_map_HW: np.ndarray, grid: int) -> np.ndarray:
    """Resample a label image to grid x grid by majority vote per cell; labels renumbered 0..R-1."""
    _, inverse = np.unique(region_map_HW, return_inverse=True)
    dense_HW = inverse.reshape(region_map_HW.shape)
    H, W = dense_HW.shape
    row_H = np.minimum(np.arange(H) * grid // H, grid - 1)
    col_W = np.minimum(np.arange(W) * grid // W, grid - 1)
    if H < grid or W < grid:  # upsample by nearest neighbour
        return _renumber(dense_HW[np.arange(grid) * H // grid][:, np.arange(grid) * W // grid])
    votes = np.zeros((grid * grid, dense_HW.max() + 1), dtype=np.int64)
    np.add.at(votes, ((row_H[:, None] * grid + col_W[None, :]).ravel(), dense_HW.ravel()), 1)
    return _renumber(votes.argmax(axis=1).reshape(grid, grid))


def _renumber(regions_GG: np.ndarray) -> np.ndarray:
    """Renumber labels 0..R-1 in order of first appearance (row-major), for stable results."""
    _, first = np.unique(regions_GG, return_index=True)
    order = np.argsort(np.argsort(first))
    _, inverse = np.unique(regions_GG, return_inverse=True)
    return order[inverse].reshape(regions_GG.shape)


def _ceiling_cells(counts_R: np.ndarray, bins: int) -> int:
    """The most cells `bins` equal clusters can hold under their majority region (the purity ceiling).

    Each region fills whole clusters, then its remainder can be one cluster's majority; the best `bins` of
    those gains bound what any split can reach, since clusters need not be connected."""
    size = int(counts_R.sum()) // bins
    gains = [size] * int((counts_R // size).sum()) + [int(r) for r in counts_R % size if r]
    return sum(sorted(gains, reverse=True)[:bins])


def agreement_ceiling(regions_N: np.ndarray, stage: int) -> float:
    """The highest agreement any balanced tree can reach at `stage` for a region map on the grid.

    A region smaller than a stage's cluster cannot own one: a disc on a quarter of the image agrees at
    most 0.77 at stage 1, however it is split. project() reaches this ceiling on everyday layouts."""
    counts_R = np.unique(np.asarray(regions_N).ravel(), return_counts=True)[1]
    return _ceiling_cells(counts_R, 2**stage) / counts_R.sum()


def _split_spatially(positions: np.ndarray, coords_P2: np.ndarray, take: int, towards: np.ndarray | None) -> np.ndarray:
    """Pick `take` of `positions`: those nearest to the `towards` cells, else one end of the long axis."""
    pts = coords_P2[positions].astype(np.float64)
    if towards is not None and len(towards):
        target = coords_P2[towards].astype(np.float64)
        score = np.sqrt(((pts[:, None, :] - target[None, :, :]) ** 2).sum(-1)).min(axis=1)
    else:
        centred = pts - pts.mean(axis=0)
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
        axis = axis if axis[np.abs(axis).argmax()] > 0 else -axis  # fix the SVD's sign: deterministic
        score = centred @ axis
    order = np.lexsort((positions, np.round(score, 9)))  # ties by position index
    return positions[order[:take]]


MAX_SUBSET_REGIONS = 10  # clusters holding more regions try only the subsets built greedily by size


def _candidate_halves(sizes_R: np.ndarray) -> list[np.ndarray]:
    """Ways to halve a cluster by region counts: (R,) cells of each region that go to the first half.

    A subset of whole regions no larger than half, topped up from one donor region (or several, largest
    first, when no single one is enough)."""
    half, R = int(sizes_R.sum()) // 2, len(sizes_R)
    if R <= MAX_SUBSET_REGIONS:
        subsets = [np.array([(bits >> r) & 1 for r in range(R)], bool) for bits in range(2**R)]
    else:
        order = np.argsort(-sizes_R, kind="stable")
        subsets = [np.isin(np.arange(R), order[:k]) for k in range(R + 1)]
    out = []
    for chosen_R in subsets:
        if sizes_R[chosen_R].sum() > half:
            continue
        for donor in np.flatnonzero(~chosen_R):
            take_R = np.where(chosen_R, sizes_R, 0)
            for r in [donor] + [r for r in np.argsort(-sizes_R, kind="stable") if r != donor and not chosen_R[r]]:
                take_R[r] += min(sizes_R[r], half - take_R.sum())
            out.append(take_R)
    return out


def _bisect(positions: np.ndarray, regions_P: np.ndarray, coords_P2: np.ndarray,
            depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a cluster into two equal halves whose subtrees, `depth` stages further, can agree best.

    Among the ways to keep whole regions together (and take the shortfall from a donor region at the
    cells nearest the chosen side), pick the one whose halves have the highest purity ceiling after
    `depth` more splits; ties go to the fewest cells moved, then to the largest donor. A single region is halved across its
    long axis."""
    half = len(positions) // 2
    region_ids, sizes_R = np.unique(regions_P[positions], return_counts=True)
    if len(region_ids) == 1:
        side = _split_spatially(positions, coords_P2, half, towards=None)
    else:
        bins = 2**depth

        def score(take_R: np.ndarray) -> tuple:
            split_R = (take_R > 0) & (take_R < sizes_R)
            return (_ceiling_cells(take_R[take_R > 0], bins) + _ceiling_cells((sizes_R - take_R)[sizes_R > take_R], bins),
                    -split_R.sum(), -take_R[split_R].sum(), sizes_R[split_R].max(initial=0))

        take_R = max(_candidate_halves(sizes_R), key=score)
        side = positions[np.isin(regions_P[positions], region_ids[take_R == sizes_R])]
        for r in np.flatnonzero((take_R > 0) & (take_R < sizes_R)):
            donor = positions[regions_P[positions] == region_ids[r]]
            side = np.concatenate([side, _split_spatially(donor, coords_P2, int(take_R[r]), towards=side)])
    rest = np.setdiff1d(positions, side)
    return (side, rest) if side.min() < rest.min() else (rest, side)


def project(region_map_HW: np.ndarray, stage: int, grid: int = 16) -> Projection:
    """Fit the nearest balanced tree (stages 0..`stage`) to a region map of any size and region count.

    The map is resampled to the grid by majority vote, then split top-down: each cluster is halved so
    that whole regions stay together and the halves can still reach the best agreement at `stage`
    (agreement_ceiling), the shortfall taken from a donor region at the cells nearest the chosen side;
    clusters holding a single region are halved across their long axis. Any number of regions and
    areas is accepted; `agreement` says how well the boundaries survived.
    """
    region_map_HW = np.asarray(region_map_HW)
    if region_map_HW.ndim != 2 or region_map_HW.size == 0:
        raise ValueError(f"a region map must be a non-empty 2-D array, got shape {region_map_HW.shape}")
    if not 0 <= stage < num_stages(grid * grid):
        raise ValueError(f"stage must be in [0, {num_stages(grid * grid) - 1}], got {stage}")
    regions_GG = _to_grid(region_map_HW, grid)
    regions_P = regions_GG.ravel()
    coords_P2 = np.stack(np.divmod(np.arange(grid * grid), grid), axis=1)
    labels = np.zeros((stage + 1, grid * grid), dtype=np.int64)
    clusters = [np.arange(grid * grid)]
    for i in range(1, stage + 1):
        children = []
        for parent, members in enumerate(clusters):
            side_a, side_b = _bisect(members, regions_P, coords_P2, depth=stage - i)
            labels[i, side_a], labels[i, side_b] = 2 * parent, 2 * parent + 1
            children += [side_a, side_b]
        clusters = children
    return Projection(labels, regions_GG, agreement(labels[-1], regions_P), agreement_ceiling(regions_P, stage))


def agreement(labels_N: np.ndarray, regions_N: np.ndarray) -> float:
    """Fraction of positions whose cluster's majority region is their own region (cluster purity)."""
    labels_N, regions_N = np.asarray(labels_N).ravel(), np.asarray(regions_N).ravel()
    _, regions_dense = np.unique(regions_N, return_inverse=True)
    counts = np.zeros((labels_N.max() + 1, regions_dense.max() + 1), dtype=np.int64)
    np.add.at(counts, (labels_N, regions_dense), 1)
    return float(counts.max(axis=1).sum() / len(labels_N))


# --------------------------------------------------------------------------------------------------
# Rendering for people
# --------------------------------------------------------------------------------------------------


def palette(stage: int) -> np.ndarray:
    """Stable colours (2^stage, 3) uint8 for the labels of one stage; children look like their parent.

    Each label owns the hue interval its binary path selects (the root owns the whole circle, child 2p
    the first half of the parent's interval, 2p + 1 the second half) and is drawn at the interval's
    centre; the last bit also alternates brightness so that siblings stay distinguishable.
    """
    labels = np.arange(2**stage)
    hues = (labels + 0.5) / 2**stage
    colours = [colorsys.hsv_to_rgb(h, 0.65, 0.95 - 0.25 * (label & 1) * (stage > 0)) for h, label in zip(hues, labels)]
    return np.round(np.array(colours) * 255).astype(np.uint8)


def render_map(labels_N: np.ndarray | torch.Tensor, stage: int, size: int = 256) -> np.ndarray:
    """A stage's labels as a colour image (size, size, 3) uint8, square cells, palette(stage) colours."""
    labels_N = np.asarray(labels_N.cpu() if isinstance(labels_N, torch.Tensor) else labels_N).ravel()
    grid = math.isqrt(len(labels_N))
    cells_GG3 = palette(stage)[labels_N.reshape(grid, grid)]
    return np.repeat(np.repeat(cells_GG3, -(-size // grid), 0), -(-size // grid), 1)[:size, :size]


def draw_boundaries(image_HW3: np.ndarray, labels_N: np.ndarray | torch.Tensor,
                    colour: tuple[int, int, int] | None = None) -> np.ndarray:
    """Copy of a uint8 image with the cluster boundaries of a map (on the latent grid) drawn over it.

    The default colour contrasts with the image: near-black on light images (most emoji), white on dark.
    (cv2.findContours + polylines looked no better here: the same 1 px lines plus a frame at the border.)"""
    labels_N = np.asarray(labels_N.cpu() if isinstance(labels_N, torch.Tensor) else labels_N).ravel()
    grid = math.isqrt(len(labels_N))
    H, W = image_HW3.shape[:2]
    labels_HW = labels_N.reshape(grid, grid)[np.arange(H) * grid // H][:, np.arange(W) * grid // W]
    out = np.array(image_HW3, dtype=np.uint8, copy=True)
    if colour is None:
        colour = (32, 32, 32) if out.mean() > 140 else (255, 255, 255)
    out[find_boundaries(labels_HW, mode="inner")] = colour
    return out
