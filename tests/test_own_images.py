"""The README's own-images config, followed literally, plans (fast) and runs (slow) the whole DAG on
an ImageFolder tree of mixed-size JPEG and PNG files."""

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from vcq.config import load_config

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("apple", "boat", "cloud")


def readme_config() -> str:
    """The YAML block of the README's "Your own images" section."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Your own images") :]
    return re.search(r"```yaml\n(.*?)```", section, re.DOTALL).group(1)


def image_tree(root: Path, per_class: dict[str, int]) -> None:
    """root/{train,val}/<class>/ with images of several sizes and formats, a colour per class."""
    rng = np.random.default_rng(0)
    for split, n in per_class.items():
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                h, w = rng.integers(20, 48, size=2)
                img = np.zeros((h, w, 3), np.uint8)
                img[..., c] = 200
                img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = rng.integers(0, 255, 3)
                Image.fromarray(img).save(root / split / name / f"{i}.{'jpg' if i % 2 else 'png'}")


def own_config(tmp_path: Path) -> Path:
    """The README config in tmp_path (extends resolved beside it), data.root repo-relative."""
    text = readme_config()
    assert len(text.strip().splitlines()) <= 5
    cfg = yaml.safe_load(text)
    root = os.path.relpath(tmp_path / "images", REPO)
    text = text.replace(cfg["data"]["root"], root)
    # `extends` is relative to the config file: give it the repository's config folder there
    (tmp_path / "config").symlink_to(REPO / "config")
    path = tmp_path / "my_images.yaml"
    path.write_text(text)
    return path


def test_readme_own_images_config_resolves_relative_paths(tmp_path):
    path = own_config(tmp_path)
    cfg = load_config(path)
    assert (
        cfg["data"]["source"] == "folder"
        and cfg["experiment"] == yaml.safe_load(readme_config())["experiment"]
    )
    assert (
        cfg["tokenizer"]["train"]["steps"]
        == load_config(REPO / "config/default.yaml")["tokenizer"]["train"]["steps"]
    )
    assert (
        not Path(cfg["data"]["root"]).is_absolute()
        and (REPO / cfg["data"]["root"]).resolve() == tmp_path / "images"
    )
    assert cfg["report"]["n_images"] is None  # taken from the data manifest


def test_readme_own_images_config_plans_the_whole_dag(dry_run, tmp_path):
    image_tree(tmp_path / "images", {"train": 2, "val": 1})
    counts, _, _ = dry_run(str(own_config(tmp_path)), "local")
    assert counts["train_tokenizer"] == counts["train_ar"] == 3
    assert counts["train_feature_net"] == 1 and counts["tables"] == counts["figures"] == 1


@pytest.mark.slow
def test_own_images_run_end_to_end(run_snakemake, figure_pixels, tmp_path):
    image_tree(tmp_path / "images", {"train": 8, "val": 2})
    base = own_config(tmp_path)
    exp = yaml.safe_load(readme_config())["experiment"]
    # the README config with toy budgets and every output under tmp_path
    (tmp_path / "tiny.yaml").write_text(
        yaml.safe_dump(
            {
                "extends": base.name,
                "paths": {
                    "work_dir": str(tmp_path / "work"),
                    "results_dir": str(tmp_path / "results"),
                },
                "tokenizer": {
                    "train": {"steps": 3, "ckpt_every": 3, "disc_start": 3, "peak_steps": 1}
                },
                "ar": {
                    "train": {
                        "steps": 3,
                        "ckpt_every": 3,
                        "val_every": 0,
                        "val_batches": 1,
                        "peak_steps": 1,
                    }
                },
                "sampling": {"samples_per_class": 2},
                "probe": {"epochs": 1},
                "eval": {
                    "demo_weights": str(tmp_path / "work/features.pt"),
                    "cache_dir": str(tmp_path / "work/cache"),
                    "demo_net": {"epochs": 1},
                    "kid_subset_size": 2,
                },
                "report": {"reference_configs": []},
            }
        )
    )
    start = time.time()
    run_snakemake("--cores", "2", config=tmp_path / "tiny.yaml", timeout=900)
    results = tmp_path / "results" / exp
    summary = (results / "summary.md").read_text()
    assert "PSNR" in summary and "class accuracy of samples (demo classifier)" in summary
    assert (
        "N = 24 training images (the data manifest's train count)"
        in (results / "tables/table2_theory.md").read_text()
    )
    figure_pixels(results / "figures/samples_cosine_cbcfg.png")
    assert time.time() - start < 900
