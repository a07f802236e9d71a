"""View recipes for encoding: one centre crop, or LlamaGen-style ten-crop (10 distinct views)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from vcq.data.images import center_crop_arr, normalize_uint8

RECIPES = ("center", "tencrop")
# torchvision's five_crop order.
_FIVE = ("top_left", "top_right", "bottom_left", "bottom_right", "center")


def view_names(recipe: str) -> list[str]:
    """Names of the views of `recipe`, in the order of the view axis."""
    if recipe == "center":
        return ["center"]
    if recipe == "tencrop":
        return list(_FIVE) + [f"flipimg_{c}" for c in _FIVE]
    raise ValueError(f"unknown view recipe '{recipe}' (have: {list(RECIPES)})")


def make_views(
    image: Image.Image | np.ndarray | torch.Tensor,
    recipe: str,
    resize: int,
    crop: int,
    uint8: bool = False,
) -> torch.Tensor:
    """(V, 3, crop, crop) views of an RGB image (PIL or uint8 HWC): uint8, or float in [-1, 1].

    The views are cut in uint8 either way, so the float views are exactly the normalised uint8
    views and an encoder fed uint8 (normalised on its device) sees the same pixels.
    """
    from torchvision.transforms import functional as F

    view_names(recipe)  # fail early on an unknown recipe
    if crop > resize:
        raise ValueError(f"crop ({crop}) must not exceed resize ({resize})")
    if isinstance(image, torch.Tensor):
        image = image.numpy()
    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    # Shorter side to `resize`, then a square centre crop: LlamaGen's ten-crop runs its
    # center_crop_arr (BOX halvings, then BICUBIC) before cutting the views.
    x = torch.from_numpy(np.ascontiguousarray(center_crop_arr(image, resize))).permute(2, 0, 1)
    if recipe == "center":
        views = F.center_crop(x, [crop, crop]).unsqueeze(0)
    else:
        # ten_crop already holds the five crops of the mirrored image, as LlamaGen's extract_codes
        # stores them; flipping again would only duplicate views.
        views = torch.stack(F.ten_crop(x, [crop, crop]))
    return views.contiguous() if uint8 else normalize_uint8(views)


def views_transform(
    recipe: str, resize: int, crop: int, uint8: bool = False
) -> Callable[[Image.Image], torch.Tensor]:
    """`make_views` bound to a recipe, for use as an ImageFolderDataset transform."""
    view_names(recipe)

    def transform(image: Image.Image) -> torch.Tensor:
        return make_views(image, recipe, resize, crop, uint8)

    return transform
