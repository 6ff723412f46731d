"""The model folder: the bundled weights give the images pinned before the folder moved to the diffusers layout."""

import hashlib

from nvg_core.images import to_uint8
from nvg_core.pipeline import NVGPipeline

# Measured with the hand-written folder format (commit 6f5da18) on CPU, fp32, at the model's default
# settings; the same with 1 and 2 threads. Image i: class PINNED_CLASSES[i], seed i, one batch.
PINNED_CLASSES = ["fruit", "heart", "bird", "flower"]
PINNED_SHA256 = [
    "1f18503251a309294253a57c9ff4797b7f9f5050dce83ffc6e92517288b7bedc",
    "d253cbd29780bf8f99e48c222780018bdb9790ecacbf3f2559ae32c328179c33",
    "284297dd722f65a12c8f4be320905d96604845534b6b7f9188842a0ac954e6bc",
    "fc7555bf2ac929c557d693ac126cda1424bd2f9808971f8359227c0eb584c847",
]
PINNED_CENTRE_PIXELS = [[154, 49, 46], [254, 104, 136], [191, 164, 181], [153, 93, 43]]
PINNED_LABELS_SHA256 = "ddee2d0532431eb24cd1bb308d233e887910d919de540da344cae07ddb340c1b"


def test_bundled_model_gives_the_images_pinned_before_the_re_save():
    pipe = NVGPipeline.from_pretrained(device="cpu")
    result = pipe.generate(PINNED_CLASSES, seeds=range(len(PINNED_CLASSES)))
    images_BHWC = to_uint8(result.images)
    assert [image[31, 31].tolist() for image in images_BHWC] == PINNED_CENTRE_PIXELS
    assert [hashlib.sha256(image.tobytes()).hexdigest() for image in images_BHWC] == PINNED_SHA256
    assert hashlib.sha256(result.labels_BSN.numpy().tobytes()).hexdigest() == PINNED_LABELS_SHA256
