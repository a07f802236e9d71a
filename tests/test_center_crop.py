"""One preprocessing for reference, reconstruction and evaluation images: ADM's center_crop_arr."""

import numpy as np
import torch
from PIL import Image

from vcq.data.images import center_crop_arr, eval_transform
from vcq.data.views import make_views


def _blocks() -> np.ndarray:
    """An 8 × 4 (W × H) image of 2 × 2 blocks, each block's four pixels averaging to 10·(block)."""
    img = np.zeros((4, 8, 3), np.uint8)
    for by in range(2):
        for bx in range(4):
            v = 10 * (4 * by + bx + 1)
            img[2 * by : 2 * by + 2, 2 * bx : 2 * bx + 2, 0] = [[v - 2, v + 2], [v + 4, v - 4]]
    img[..., 1] = img[..., 2] = 255 - img[..., 0]
    return img


def test_box_halving_then_centre_crop_by_hand():
    # shorter side 4 >= 2 x 2: one BOX halving to 4 x 2 (each pixel the mean of its block), then
    # a BICUBIC resize to the same size (none), then columns (4 - 2) // 2 = 1 and 2
    out = center_crop_arr(Image.fromarray(_blocks()), 2)
    expected = np.array([[20, 30], [60, 70]])
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[..., 0].tolist() == expected.tolist()
    assert out[..., 1].tolist() == (255 - expected).tolist()


def test_upscaling_is_one_bicubic_resize_and_the_crop_rounds_down():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (5, 7, 3), np.uint8))
    out = center_crop_arr(img, 9)  # 7 x 5 -> round(7 * 9 / 5) = 13 x 9, columns 2..10
    want = np.asarray(img.resize((13, 9), resample=Image.BICUBIC))[:, 2:11]
    assert np.array_equal(out, want)


def test_evaluation_and_encoding_views_use_it():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 60, 3), np.uint8))
    ref = center_crop_arr(img, 18)
    x = eval_transform(18)(img)
    back = ((x + 1) * 127.5).round().to(torch.uint8)
    assert torch.equal(back, torch.from_numpy(ref.copy()).permute(2, 0, 1))
    views = make_views(img, "tencrop", resize=18, crop=16, uint8=True)
    assert torch.equal(views[4], torch.from_numpy(ref[1:17, 1:17]).permute(2, 0, 1))
