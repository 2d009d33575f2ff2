"""The PIL + numpy preprocessing is torchvision's eval transform, to the last bit, for every
registered model (sizes, crop_pct and interpolations differ between them)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from torchvision import transforms as T

from whales_identify.models import get_pretrained_cfg, list_models
from whales_identify.transforms import preprocess, to_batch

_MODES = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR}


def torchvision_transform(cfg):  # the transform this project used before it went torch-free
    size = cfg.input_size[-1]
    return T.Compose([T.Resize(int(math.floor(size / cfg.crop_pct)), interpolation=_MODES[cfg.interpolation]),
                      T.CenterCrop(size), T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])


@pytest.mark.parametrize("model_id", list_models())
@pytest.mark.parametrize("shape", [(300, 200), (199, 517), (224, 224), (1000, 333), (50, 70)])
def test_preprocess_equals_torchvision(model_id, shape):
    cfg = get_pretrained_cfg(model_id)
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    image = Image.fromarray(rng.integers(0, 256, (shape[1], shape[0], 3), dtype=np.uint8))
    want = torchvision_transform(cfg)(image).numpy()
    got = preprocess([image], cfg)[0]
    assert got.shape == want.shape == cfg.input_size
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(to_batch([image], cfg).numpy()[0], want)


def test_grey_and_rgba_inputs_become_rgb():
    cfg = get_pretrained_cfg("efficientnet_lite0.imagenet")
    for mode in ("L", "RGBA", "P"):
        assert preprocess([Image.new(mode, (120, 90))], cfg).shape == (1, 3, 224, 224)
    assert preprocess([], cfg).shape == (0, 3, 224, 224)


def test_registry_and_preprocessing_do_not_import_torch():
    code = ("import sys; from PIL import Image\n"
            "from whales_identify.models import get_pretrained_cfg\n"
            "from whales_identify.transforms import preprocess\n"
            "preprocess([Image.new('RGB', (64, 64))], get_pretrained_cfg('efficientnet_lite0.imagenet'))\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
