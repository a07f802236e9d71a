"""Bad input knowable from the config, refused by vcq.config when it is loaded (one line naming
the key), or accepted where the user meant something valid."""

from pathlib import Path

import pytest
import torch
import yaml

from vcq.config import ConfigError, load_config, resolve_config
from vcq.losses import TokenizerLoss, patch_depth

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "config/default.yaml"


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(f"extends: {DEMO}\n{text}")
    return path


def test_numbers_with_a_bare_exponent_are_numbers(tmp_path):
    # YAML 1.1 reads `5e-4` as a string; in a file, in --set and in Snakemake's own reading of the
    # config file (a mapping held in memory) it is the number the user meant
    cfg = load_config(_config(tmp_path, "tokenizer: {train: {lr: 5e-4}}"), ["ar.train.lr=1E-3"])
    assert cfg["tokenizer"]["train"]["lr"] == 5e-4 and cfg["ar"]["train"]["lr"] == 1e-3
    raw = yaml.safe_load("tokenizer: {train: {lr: 5e-4}}")
    assert raw["tokenizer"]["train"]["lr"] == "5e-4"  # what Snakemake hands over
    cfg = resolve_config({"extends": str(DEMO), **raw}, REPO, "snakemake")
    assert cfg["tokenizer"]["train"]["lr"] == 5e-4


def test_a_config_that_is_a_folder_or_binary_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="not a readable YAML file"):
        load_config(tmp_path)
    (tmp_path / "c.yaml").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigError, match=r"c\.yaml: not a readable YAML file"):
        load_config(tmp_path / "c.yaml")


def test_an_override_that_is_not_yaml_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"override 'report\.n_images=\[1,': invalid YAML"):
        load_config(DEMO, ["report.n_images=[1,"])


def test_a_string_that_is_not_a_number_is_still_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"tokenizer\.train\.lr"):
        load_config(_config(tmp_path, "tokenizer: {train: {lr: 5e-4x}}"))


@pytest.mark.parametrize(
    "text, key",
    [
        ("paths: {work_dir: 'work/{exp}'}", "paths.work_dir"),
        ("data: {root: 'data/{x'}", "data.root"),
        ("tokenizer: {train: {lpips_weights: 'w/}.pth'}}", "tokenizer.train.lpips_weights"),
        ('paths: {results_dir: "res\\nults"}', "paths.results_dir"),
    ],
)
def test_paths_snakemake_cannot_take_are_refused_naming_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=rf"bad value at '{key}'"):
        load_config(_config(tmp_path, text))


@pytest.mark.parametrize("size", [8, 16, 23, 24, 32, 256])
def test_the_gan_runs_at_every_image_size_the_schema_allows(size):
    # the demo's 16 px with disc_start below steps used to fail at the first GAN step ("Kernel size
    # can't be greater than actual input size"); now the discriminator is as deep as it allows
    cfg = load_config(DEMO, ["tokenizer.train.disc_start=0", "tokenizer.train.lpips_weights=null"])
    torch.manual_seed(0)
    loss = TokenizerLoss(cfg["tokenizer"]["train"], size)
    x, recon = torch.rand(2, 3, size, size) * 2 - 1, torch.rand(2, 3, size, size) * 2 - 1
    total, terms = loss.generator(x, recon, torch.tensor(0.0), step=0)
    assert "gen_adv" in terms and torch.isfinite(total)
    assert torch.isfinite(loss.discriminator_step_loss(x, recon))
    # 24 px and up keep the three layers of the paper's PatchGAN (same weights as before)
    assert patch_depth(size) == (3 if size >= 24 else 2 if size >= 12 else 1)


@pytest.mark.parametrize(
    "text",
    [
        # fewer images than ranks (was an IndexError in the DataLoader)
        "tokenizer: {train: {batch_size: 4}}\nresources: {train_tokenizer: {gpus: 8}}",
        # not divisible (was silently rounded down to 4 x 2 = 8 images per step)
        "tokenizer: {train: {batch_size: 10, grad_accum: 2}}\n"
        "resources: {train_tokenizer: {gpus: 2}}",
        # the AR loop's check, at load time, counting the nodes too
        "ar: {train: {batch_size: 64}}\nresources: {train_ar: {gpus: 8, nodes: 3}}",
    ],
)
def test_a_batch_that_does_not_split_over_the_ranks_is_refused_at_load(tmp_path, text):
    section = text.split(":", 1)[0]
    with pytest.raises(ConfigError, match=rf"bad value at '{section}\.train\.batch_size'"):
        load_config(_config(tmp_path, text))


def test_a_batch_that_splits_over_the_ranks_is_accepted(tmp_path):
    text = "tokenizer: {train: {batch_size: 64, grad_accum: 2}}\n"
    text += "resources: {default: {gpus: 4}, train_tokenizer: {nodes: 2}}"
    assert load_config(_config(tmp_path, text))["tokenizer"]["train"]["batch_size"] == 64
