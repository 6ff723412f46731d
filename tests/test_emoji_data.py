"""The emoji-32 dataset builder's pure parts (no npm, no network) and the tiny fixture from the real build."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from nvg_core.data.emoji import (CLASS_OF_SUBCATEGORY, CLASS_SUBCATEGORIES, CLASSES, EXPECTED_COUNT, EXPECTED_SHA256,
                                 STYLES, IconSet, load_emoji_dataset, normalise, normalise_codepoint,
                                 reference_mismatch, split_by_emoji)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "emoji_tiny.npz"


def test_class_map_has_32_classes_and_no_subcategory_twice():
    assert len(CLASSES) == 32 and len(set(CLASSES)) == 32
    assert CLASSES[0] == "smiley" and CLASSES[-1] == "sign"  # the reference table's order
    assert set(CLASS_OF_SUBCATEGORY.values()) == set(range(32))
    assert len(CLASS_OF_SUBCATEGORY) == sum(len(subs) for subs in CLASS_SUBCATEGORIES.values())
    assert CLASSES[CLASS_OF_SUBCATEGORY["food-fruit"]] == "fruit"
    assert CLASSES[CLASS_OF_SUBCATEGORY["sky & weather"]] == "weather_sky"


def test_split_keeps_every_style_of_an_emoji_together_and_is_deterministic():
    emoji = np.array([f"{i % 50:04X}" for i in range(500)])  # 50 emoji, 10 "styles" each
    train, held = split_by_emoji(emoji, held_out_fraction=0.2)
    assert len(set(emoji[train]) & set(emoji[held])) == 0 and len(train) + len(held) == 500
    assert 0 < len(held) < 500
    again = split_by_emoji(emoji, held_out_fraction=0.2)
    assert np.array_equal(train, again[0]) and np.array_equal(held, again[1])
    # Without labels, an emoji's side does not depend on which other images are in the set.
    subset = emoji[:100]
    _, held_subset = split_by_emoji(subset, held_out_fraction=0.2)
    assert set(subset[held_subset]) == set(emoji[held]) & set(subset)
    # Another seed gives another split.
    assert not np.array_equal(held, split_by_emoji(emoji, held_out_fraction=0.2, seed=1)[1])


def test_split_with_labels_holds_out_some_emoji_of_every_class():
    emoji = np.array([f"{i % 96:04X}" for i in range(960)])
    labels = np.array([(i % 96) % 32 for i in range(960)], dtype=np.int16)  # 3 emoji per class
    plain_train, plain_held = split_by_emoji(emoji, held_out_fraction=0.1)
    assert len(set(labels[plain_held])) < 32  # too few emoji per class for the hash alone
    train, held = split_by_emoji(emoji, held_out_fraction=0.1, labels=labels)
    assert set(labels[held]) == set(range(32)) and set(labels[train]) == set(range(32))
    assert set(plain_held) <= set(held)  # labels only add held-out emoji
    assert len(set(emoji[train]) & set(emoji[held])) == 0


def test_fixture_has_the_dataset_layout():
    data = load_emoji_dataset(FIXTURE)
    n = len(data.images)
    assert 24 <= n <= 96 and FIXTURE.stat().st_size < 300_000
    assert data.images.dtype == np.uint8 and data.images.shape == (n, 64, 64, 3)
    assert data.label.dtype == np.int16 and data.label.shape == (n,) and data.label.min() >= -1
    for strings in (data.emoji, data.style, data.name):
        assert strings.dtype.kind == "U" and strings.shape == (n,)
    assert data.classes == CLASSES and set(data.style.tolist()) <= set(STYLES)
    assert (data.images[:, 0, 0] == 255).all()  # white background
    # The fixture is held out from training (the bundled model's tests rely on it).
    _, held = split_by_emoji(data.emoji)
    assert len(held) == n


def test_normalise_centres_fits_and_whitens():
    icon = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    icon.paste((255, 0, 0, 255), (10, 10, 110, 60))  # a 100x50 red box off centre
    icon.putpixel((150, 90), (0, 0, 255, 8))  # alpha 8 is background for the crop
    out = normalise(icon, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    red = (out[:, :, 0] > 200) & (out[:, :, 1] < 60)
    rows, cols = np.nonzero(red)
    assert cols.max() - cols.min() + 1 == 56 and rows.max() - rows.min() + 1 == 28  # 64 * (1 - 2/16) = 56
    assert (cols.min() + cols.max()) / 2 == 31.5 and (rows.min() + rows.max()) / 2 == 31.5
    assert (out[~red] > 200).all() and (out[:4] == 255).all() and (out[-4:] == 255).all()


def test_reference_mismatch_reports_both_values_and_the_styles():
    assert reference_mismatch(EXPECTED_COUNT, EXPECTED_SHA256[64], 64, {}, {}) is None
    assert reference_mismatch(EXPECTED_COUNT, "anything", 128, {}, {}) is None  # no reference hash at 128 px
    message = reference_mismatch(12_000, "abc123", 64, {"noto": 1645, "twemoji": 1900}, {"Pillow": "12.3.0"})
    assert message.startswith("warning") and "12000" in message and str(EXPECTED_COUNT) in message
    assert "abc123" in message and EXPECTED_SHA256[64] in message
    assert "'twemoji': 1900" in message and "12.3.0" in message and "13.0.0" in message


def test_codepoints_are_normalised():
    assert normalise_codepoint("0023-FE0F-20E3") == "23-20e3"
    assert normalise_codepoint("1F600") == "1f600"
    assert normalise_codepoint("1F3F3-FE0F-200D-26A7-FE0F") == "1f3f3-200d-26a7"


def test_icon_set_follows_aliases_and_uses_the_default_view_box(tmp_path):
    icons = {"width": 128, "height": 128, "icons": {"apple": {"body": "<path d='M0 0h9v9z'/>"},
                                                    "wide": {"body": "<g/>", "left": 2, "width": 36}},
             "aliases": {"red-apple": {"parent": "apple"}, "fruit": {"parent": "red-apple"}}}
    (tmp_path / "icons.json").write_text(json.dumps(icons))
    (tmp_path / "chars.json").write_text(json.dumps({"1f34e": "red-apple"}))
    icon_set = IconSet(tmp_path)
    assert "fruit" in icon_set and "pear" not in icon_set and icon_set.chars == {"1f34e": "red-apple"}
    assert 'viewBox="0 0 128 128"' in icon_set.svg("fruit") and "M0 0h9v9z" in icon_set.svg("fruit")
    assert 'viewBox="2 0 36 128"' in icon_set.svg("wide")
