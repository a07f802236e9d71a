"""Own-data image folders as they come (issue 23, images): every integer depth, palette,
transparency, CMYK and EXIF orientation read as the image shows; very large images refused or
decoded small; hidden folders ignored; empty class folders and train/val mismatches named."""

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vcq.data.images import ImageFolderDataset, ImageTooLarge, load_rgb
from vcq.io import StepError

REPO = Path(__file__).resolve().parent.parent


def _rgb(path, **kw) -> np.ndarray:
    return np.asarray(load_rgb(path, **kw))


def test_integer_depths_scale_to_8_bits(tmp_path):
    # a 16-bit grayscale PNG (I;16) loaded as solid white; 32-bit integer images (I) likewise
    ramp16 = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp16).save(tmp_path / "g16.png")
    ramp32 = np.linspace(0, 2**31 - 1, 64 * 64).reshape(64, 64).astype(np.int32)
    Image.fromarray(ramp32).save(tmp_path / "g32.tif")
    for name, mode in (("g16.png", "I;16"), ("g32.tif", "I")):
        assert Image.open(tmp_path / name).mode == mode
        x = _rgb(tmp_path / name)
        assert x.dtype == np.uint8 and x.shape == (64, 64, 3)
        assert x.min() == 0 and x.max() == 255 and abs(int(x[32, 0, 0]) - 128) <= 2
        assert np.all(np.diff(x[..., 0].ravel().astype(int)) >= 0)  # the ramp, not clipped


def test_palette_transparency_cmyk_and_orientation(tmp_path):
    red = Image.new("RGB", (8, 8), (200, 10, 10))
    red.convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    assert tuple(_rgb(tmp_path / "p.png")[0, 0]) == (200, 10, 10)
    rgba = Image.new("RGBA", (8, 8), (10, 20, 30, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 4, 8))  # left half fully transparent
    rgba.save(tmp_path / "rgba.png")
    Image.new("LA", (8, 8), (50, 0)).save(tmp_path / "la.png")
    x = _rgb(tmp_path / "rgba.png")
    assert tuple(x[0, 0]) == (255, 255, 255) and tuple(x[0, 7]) == (10, 20, 30)
    assert (_rgb(tmp_path / "la.png") == 255).all()  # transparent: the white page
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    c = _rgb(tmp_path / "cmyk.jpg")[4, 4].astype(int)
    assert c[0] < 30 and c[1] > 225 and c[2] > 225  # cyan
    wide = Image.new("RGB", (16, 8), (0, 0, 0))
    wide.paste((255, 255, 255), (0, 0, 8, 8))  # white on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    wide.save(tmp_path / "rot.jpg", exif=exif, quality=100)
    upright = _rgb(tmp_path / "rot.jpg")
    assert upright.shape == (16, 8, 3) and upright[2, 4].mean() > 200 and upright[13, 4].mean() < 50


def test_very_large_images_are_refused_and_counted_or_decoded_small(tmp_path, caplog):
    # a 12000 x 12000 image only gave PIL's DecompressionBombWarning, then 6 s and 1.9 GB per read
    (tmp_path / "a").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "0.png")
    Image.new("RGB", (120, 100)).save(tmp_path / "a" / "1.png")
    data = ImageFolderDataset(tmp_path, max_pixels=10_000)
    with caplog.at_level(logging.WARNING):
        assert data.scan() == [str(tmp_path / "a" / "1.png")]
    assert "120x100 = 0.0 MP, above data.max_pixels" in caplog.text
    with pytest.raises(ImageTooLarge):
        load_rgb(tmp_path / "a" / "1.png", max_pixels=10_000)
    # a JPEG far above what a step needs decodes at a power-of-two reduction still covering it
    Image.new("RGB", (2000, 1000), (0, 90, 0)).save(tmp_path / "big.jpg")
    small = load_rgb(tmp_path / "big.jpg", min_side=100)
    assert 100 <= min(small.size) < 200 and small.size[0] == 2 * small.size[1]
    assert load_rgb(tmp_path / "big.jpg").size == (2000, 1000)


def test_hidden_folders_are_not_classes_and_empty_ones_are_named(tmp_path):
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / c / "0.png")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / ".ipynb_checkpoints" / "0.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "cat" / "._0.png")  # macOS resource fork
    data = ImageFolderDataset(tmp_path)
    assert data.classes == ["cat", "dog"] and len(data) == 2
    (tmp_path / "emu").mkdir()
    (tmp_path / "fox").mkdir()
    with pytest.raises(StepError, match="class folders without images: emu, fox") as e:
        ImageFolderDataset(tmp_path)
    assert "\n" not in str(e.value)


def test_train_val_class_mismatch_names_the_folders(tmp_path, capsys, run_step):
    for split, classes in (("train", ("a", "b", "c")), ("val", ("a", "d"))):
        for c in classes:
            (tmp_path / "mine" / split / c).mkdir(parents=True)
            Image.new("RGB", (4, 4)).save(tmp_path / "mine" / split / c / "0.png")
    (tmp_path / "c.yaml").write_text(
        f"extends: {REPO / 'config/default.yaml'}\n"
        f"data: {{source: folder, root: {tmp_path / 'mine'}}}\n"
        f"paths: {{work_dir: {tmp_path / 'work'}, results_dir: {tmp_path / 'res'}}}\n"
    )
    with pytest.raises(SystemExit):
        run_step("make_dataset", "--config", tmp_path / "c.yaml")
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "different class folders (only in train: b, c; only in val: d)" in err


def test_a_removed_split_folder_is_one_line_naming_the_rule(tmp_path):
    from vcq.data.images import split_images

    data = {
        "source": "synthetic",
        "root": str(tmp_path),
        "num_classes": 2,
        "train_per_class": 1,
        "val_per_class": 1,
        "image_size": 8,
        "seed": 0,
        "max_pixels": None,
    }
    with pytest.raises(StepError, match="no such image folder .* --forcerun make_dataset"):
        split_images(data, "train")
