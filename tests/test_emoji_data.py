from pathlib import Path

import numpy as np
from PIL import Image

from nvg_core.data.emoji import (CLASS_OF_SUBCATEGORY, CLASSES, load_emoji_dataset, normalise,
                                 normalise_codepoint, split_by_emoji)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "emoji_tiny.npz"


def test_class_map_has_32_classes_and_no_subcategory_twice():
    assert len(CLASSES) == 32 and len(set(CLASSES)) == 32
    assert set(CLASS_OF_SUBCATEGORY.values()) == set(range(32))
    assert CLASSES[CLASS_OF_SUBCATEGORY["food-fruit"]] == "fruit"


def test_split_keeps_every_style_of_an_emoji_together_and_is_deterministic():
    emoji = np.array([f"{i % 50:04X}" for i in range(500)])
    train, held = split_by_emoji(emoji, held_out_fraction=0.2)
    assert len(set(emoji[train]) & set(emoji[held])) == 0 and len(train) + len(held) == 500
    again = split_by_emoji(emoji, held_out_fraction=0.2)
    assert np.array_equal(train, again[0]) and np.array_equal(held, again[1])
    # The split of an emoji does not depend on which other images are in the set.
    subset = emoji[:100]
    _, held_subset = split_by_emoji(subset, held_out_fraction=0.2)
    assert set(subset[held_subset]) == set(emoji[held]) & set(subset)


def test_fixture_has_the_dataset_layout():
    data = load_emoji_dataset(FIXTURE)
    assert data.images.dtype == np.uint8 and data.images.shape[1:] == (64, 64, 3)
    assert data.label.dtype == np.int16 and len(data.label) == len(data.images) == len(data.emoji)
    assert data.classes == CLASSES


def test_normalise_centres_fits_and_whitens():
    icon = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    icon.paste((255, 0, 0, 255), (10, 10, 110, 60))  # a 100x50 red box off centre
    out = normalise(icon, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    red = (out[:, :, 0] > 200) & (out[:, :, 1] < 60)
    rows, cols = np.nonzero(red)
    assert cols.max() - cols.min() + 1 == 56 and abs(rows.max() - rows.min() + 1 - 28) <= 1
    assert abs((cols.min() + cols.max()) / 2 - 31.5) <= 1 and abs((rows.min() + rows.max()) / 2 - 31.5) <= 1
    assert (out[0, 0] == 255).all()


def test_codepoints_are_normalised():
    assert normalise_codepoint("0023-FE0F-20E3") == "23-20e3"
    assert normalise_codepoint("1F600") == "1f600"
