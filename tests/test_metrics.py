import numpy as np
import torch

from nvg_core.evaluate import load_evaluator, lock_and_swap, tokenizer_quality
from nvg_core.metrics import (EmojiNet, EmojiNetConfig, adjusted_rand_index, augment, embed_images, frechet_distance,
                              kid, nearest_neighbour_distance, precision_recall)
from nvg_core.sampling import SamplingOptions


def gaussian(n: int, d: int = 8, seed: int = 0, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


def test_frechet_distance_is_zero_for_identical_sets_and_grows_with_a_mean_shift():
    x = gaussian(500)
    assert abs(frechet_distance(x, x)) < 1e-8
    distances = [frechet_distance(x, x + shift) for shift in (0.5, 1.0, 2.0)]
    assert np.allclose(distances, [8 * 0.25, 8 * 1.0, 8 * 4.0])  # |shift|^2 over 8 dimensions
    assert frechet_distance(x, gaussian(500, seed=1)) < frechet_distance(x, gaussian(500, seed=1, shift=0.5))


def test_kid_is_about_zero_for_one_distribution_and_positive_for_a_shifted_one():
    same = kid(gaussian(400), gaussian(400, seed=1), num_subsets=20, subset_size=200)
    shifted = kid(gaussian(400), gaussian(400, seed=1, shift=1.0), num_subsets=20, subset_size=200)
    assert abs(same) < 0.05 and shifted > 1.0


def test_precision_and_recall_are_one_for_identical_sets_and_drop_for_disjoint_ones():
    x = gaussian(200)
    assert precision_recall(x, x) == (1.0, 1.0)
    precision, recall = precision_recall(x, x + 10)
    assert precision == 0.0 and recall == 0.0


def test_nearest_neighbour_distance():
    x = gaussian(50)
    assert np.allclose(nearest_neighbour_distance(x[:10], x, chunk=3), 0, atol=1e-6)
    assert np.allclose(nearest_neighbour_distance(np.zeros((1, 2)), np.array([[3.0, 4.0], [6.0, 8.0]])), [5.0])


def test_adjusted_rand_index_is_one_up_to_relabelling_and_about_zero_for_random_partitions():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 8, 2000)
    assert adjusted_rand_index(a, (a + 3) % 8 * 10) == 1.0
    assert abs(adjusted_rand_index(a, rng.integers(0, 8, 2000))) < 0.02
    assert adjusted_rand_index(np.zeros(5), np.zeros(5)) == 1.0  # one cluster each
    assert adjusted_rand_index(np.arange(5), np.arange(5)[::-1]) == 1.0  # every item alone
    assert adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]) < 0


def tiny_config() -> EmojiNetConfig:
    return EmojiNetConfig(resolution=16, channels=(4, 8, 8, 8, 8), num_classes=3, num_styles=2, num_emoji=5)


def test_emojinet_shapes_and_embedding():
    model = EmojiNet.from_spec(tiny_config()).eval()
    features, classes, emoji, styles = model(torch.zeros(2, 3, 16, 16))
    assert features.shape == (2, 8) and classes.shape == (2, 3) and emoji.shape == (2, 5) and styles.shape == (2, 2)
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    features_ND, probs_NK = embed_images(model, images, batch_size=2)
    assert features_ND.shape == (5, 8) and np.allclose(probs_NK.sum(1), 1)
    assert EmojiNet.from_spec(EmojiNetConfig()).feature_dim == 192
    assert 1_000_000 < sum(p.numel() for p in EmojiNet.from_spec(EmojiNetConfig()).parameters()) < 2_000_000


def test_augment_keeps_shape_and_flips_only_where_allowed():
    x = torch.linspace(-1, 1, 16).expand(2, 3, 16, 16).contiguous()
    out = augment(x, torch.tensor([False, False]), torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert (out[:, :, :, -1].mean() > out[:, :, :, 0].mean()).item()  # left-to-right ramp kept without flips


def test_evaluator_saves_and_loads_as_a_diffusers_model(tmp_path):
    model = EmojiNet.from_spec(tiny_config()).eval()
    with torch.no_grad():
        model.backbone[1].running_mean.fill_(0.3)  # buffers travel too
    model.save_pretrained(tmp_path / "evaluator")
    loaded = load_evaluator(tmp_path)
    assert isinstance(loaded, EmojiNet) and loaded.spec == model.spec
    x = torch.randn(2, 3, 16, 16)
    for a, b in zip(model(x), loaded(x)):
        assert torch.equal(a, b)


def test_lock_and_swap_is_regenerate_for_every_image_at_once(tiny_pipeline):
    options = SamplingOptions(flow_steps=2)
    sources = tiny_pipeline.generate([0, 1, 2], seeds=[1, 2, 3], options=options)
    class_b, seeds = np.array([3, 2, 0]), np.array([7, 8, 9])
    swapped = lock_and_swap(tiny_pipeline, sources, 2, class_b, seeds, options)
    for i in range(3):
        one = tiny_pipeline.regenerate(sources, from_stage=3, keep_content=True, class_labels=int(class_b[i]),
                                       seeds=[int(seeds[i])], index=i, options=options)
        assert torch.equal(one.labels_BSN[0], swapped.labels_BSN[i]) and torch.equal(one.class_labels_BS[0], swapped.class_labels_BS[i])
        assert torch.allclose(one.images[0], swapped.images[i], atol=1e-5)


def test_tokenizer_quality_gives_one_value_per_stage(tiny_pipeline):
    images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    psnr_S, ssim_S = tokenizer_quality(tiny_pipeline, images, batch_size=2)
    assert len(psnr_S) == len(ssim_S) == tiny_pipeline.num_stages and all(np.isfinite(psnr_S))


def test_explained_variance_is_one_for_region_constant_images_and_near_zero_for_noise():
    from nvg_core.evaluate import explained_variance
    regions_P = np.repeat(np.arange(4), 4)  # a 4x4 grid: one region per row
    flat_HWC = np.broadcast_to(np.array([10, 80, 160, 240])[np.arange(16) // 4, None, None], (16, 16, 3))
    noise_HWC = np.random.default_rng(0).integers(0, 256, (16, 16, 3))
    scores = explained_variance(np.stack([flat_HWC, noise_HWC]), np.stack([regions_P, regions_P]))
    assert scores[0] == 1.0 and 0 <= scores[1] < 0.05


def test_first_split_ignores_another_class_only_when_the_model_ignores_classes():
    from conftest import make_tiny_pipeline

    from nvg_core.evaluate import first_split_agreement
    pipe = make_tiny_pipeline(seed=3)
    classes, seeds, options = np.arange(8) % 4, np.arange(8), SamplingOptions(flow_steps=2)
    embeddings = (pipe.transformer.content_class_embed.weight, pipe.transformer.structure_class_embed.weight)
    with torch.no_grad():
        for weight in embeddings:  # random init is 0.02: make the class matter
            weight.normal_(generator=torch.Generator().manual_seed(0))
    aware = first_split_agreement(pipe, classes, seeds, options)
    with torch.no_grad():
        for weight in embeddings:
            weight.zero_()
    blind = first_split_agreement(pipe, classes, seeds, options)
    assert blind["other_class"] == 1.0 and aware["other_class"] < 1.0
    assert blind["other_noise"] < 1.0


def test_structure_only_swap_resamples_the_locked_codes_as_the_new_class(tiny_pipeline):
    options = SamplingOptions(flow_steps=2)
    sources = tiny_pipeline.generate([0, 1], seeds=[1, 2], options=options)
    swapped = lock_and_swap(tiny_pipeline, sources, 2, np.array([3, 2]), np.array([7, 8]), options, keep_content=False)
    assert torch.equal(swapped.labels_BSN[:, :3], sources.labels_BSN[:, :3])  # the maps are kept
    assert (swapped.class_labels_BS == torch.tensor([[3], [2]])).all()  # every stage is the new class
    one = tiny_pipeline.regenerate(sources, from_stage=3, keep_content=False, class_labels=3, seeds=[7], index=0,
                                   options=options)
    assert torch.allclose(one.images[0], swapped.images[0], atol=1e-5)


def test_photos_for_structure_transfer_come_bundled_with_scikit_image():
    from nvg_core.evaluate import PHOTOS, photo_images
    photos = photo_images(16)
    assert photos.shape == (len(PHOTOS), 16, 16, 3) and photos.dtype == np.uint8 and len(PHOTOS) >= 8
    assert len({p.tobytes() for p in photos}) == len(PHOTOS)


def test_structure_transfer_reports_accuracy_source_rate_and_layout_per_stage(tiny_pipeline):
    from nvg_core.evaluate import structure_transfer

    class Judge(torch.nn.Module):  # an "evaluator" that always reads class 1
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def forward(self, pixels):
            logits = torch.zeros(len(pixels), 4)
            logits[:, 1] = 1
            return torch.zeros(len(pixels), 2), logits, None, None

    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    options = SamplingOptions(flow_steps=2)
    report = structure_transfer(tiny_pipeline, Judge(), images, np.array([1, 1, 2, 3]), np.arange(4), options, options,
                                source_N=np.array([0, 1, 0, 1]), stages=(1, 2))
    assert report["free"]["accuracy"] == 0.5 and set(report) == {"free", "1", "2"}
    assert report["1"]["accuracy"] == 0.5 and report["1"]["source_rate"] == 0.5
    assert 0 <= report["2"]["layout"] <= 1 and report["2"]["layout_ratio"] > 0
