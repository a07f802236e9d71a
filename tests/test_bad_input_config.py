"""Bad input knowable from the config, refused by vcq.config when it is loaded (one line naming
the key), or accepted where the user meant something valid."""

from pathlib import Path

import pytest
import yaml

from vcq.config import ConfigError, load_config, resolve_config

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


def test_a_string_that_is_not_a_number_is_still_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"tokenizer\.train\.lr"):
        load_config(_config(tmp_path, "tokenizer: {train: {lr: 5e-4x}}"))


@pytest.mark.parametrize(
    "text, key",
    [
        ("paths: {work_dir: 'work/{exp}'}", "paths.work_dir"),
        ("data: {root: 'data/{x'}", "data.root"),
        ('paths: {results_dir: "res\\nults"}', "paths.results_dir"),
    ],
)
def test_paths_snakemake_cannot_take_are_refused_naming_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=rf"bad value at '{key}'"):
        load_config(_config(tmp_path, text))
