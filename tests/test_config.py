"""The config system: validation errors name the key, defaults fill in, shipped configs load."""

from pathlib import Path

import pytest
import yaml

from vcq.config import ConfigError, k_sizes_for, load_config, tokenizer_section

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(
    str(p.relative_to(ROOT))
    for p in (ROOT / "config").rglob("*.yaml")
    if p.parent.name != "models" and p.name != "paper_numbers.yaml"
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


MINIMAL = "experiment: t\nschedules: [{name: c, kind: cosine, k_min: 2, k_max: 64}]\n"


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_configs_validate(path):
    cfg = load_config(ROOT / path)
    assert cfg["schedules"] and isinstance(cfg["tokenizer"]["model"], dict)
    for s in cfg["schedules"]:
        assert len(k_sizes_for(cfg, s["name"])) == cfg["tokenizer"]["num_tokens"]


def test_imagenet_config_holds_the_papers_settings():
    cfg = load_config(ROOT / "config/imagenet/base.yaml")
    assert (
        cfg["tokenizer"]["model"]["name"] == "tokenizer_base" and cfg["ar"]["model"]["dim"] == 768
    )
    assert cfg["ar"]["train"]["betas"] == [0.9, 0.96] and cfg["ar"]["train"]["weight_decay"] == 0.03
    assert (
        cfg["tokenizer"]["train"]["warmup_steps"] == 13000 and cfg["tokenizer"]["num_tokens"] == 256
    )


def test_defaults_are_filled(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg["seed"] == 0 and cfg["paths"]["work_dir"] == "work"
    assert cfg["schedules"][0]["alpha"] == 2.5
    assert cfg["ar"]["train"]["grad_clip"] == 1.0


@pytest.mark.parametrize(
    "text, key",
    [
        (MINIMAL + "ar: {train: {stepz: 3}}\n", "ar.train.stepz"),
        (MINIMAL + "bogus: 1\n", "bogus"),
        (MINIMAL + "tokenizer: {train: {lr: fast}}\n", "tokenizer.train.lr"),
        ("experiment: t\n", "schedules"),
        (MINIMAL.replace("kind: cosine", "kind: zigzag"), "schedules.0.kind"),
    ],
)
def test_bad_key_is_named_in_one_line(tmp_path, text, key):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert key in str(e.value) and "\n" not in str(e.value)


def test_bad_model_name_lists_known_models(tmp_path):
    with pytest.raises(ConfigError, match="tokenizer_base"):
        load_config(write(tmp_path, MINIMAL + "tokenizer: {model: tokenizer_huge}\n"))


def test_preset_restricted_to_unknown_schedule_is_rejected(tmp_path):
    text = MINIMAL + "sampling: {presets: [{name: a, guidance: none, schedules: [nope]}]}\n"
    with pytest.raises(ConfigError, match="sampling.presets.0.schedules.*nope"):
        load_config(write(tmp_path, text))


def test_overrides_are_validated_too(tmp_path):
    path = write(tmp_path, MINIMAL)
    assert load_config(path, ["ar.train.steps=7"])["ar"]["train"]["steps"] == 7
    with pytest.raises(ConfigError, match="ar.train.steps"):
        load_config(path, ["ar.train.steps=-1"])


def test_schedule_quantizer_overrides_apply_to_that_schedule_only(tmp_path):
    cfg = yaml.safe_load(MINIMAL)
    cfg["schedules"].append(
        {"name": "d", "kind": "constant", "k_max": 64, "quantizer": {"l2_norm": False}}
    )
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cfg = load_config(path)
    assert tokenizer_section(cfg, "d")["quantizer"]["l2_norm"] is False
    assert tokenizer_section(cfg, "c")["quantizer"]["l2_norm"] is True


def test_extends_merges_mappings_and_replaces_lists(tmp_path):
    (tmp_path / "base.yaml").write_text(MINIMAL + "ar: {train: {steps: 5, lr: 0.1}}\n")
    child = tmp_path / "child.yaml"
    child.write_text(
        "extends: base.yaml\nexperiment: child\nar: {train: {steps: 9}}\n"
        "schedules: [{name: k, kind: constant, k_max: 8}]\n"
    )
    cfg = load_config(child)
    assert cfg["experiment"] == "child" and cfg["ar"]["train"] == {
        **cfg["ar"]["train"],
        "steps": 9,
        "lr": 0.1,
    }
    assert [s["name"] for s in cfg["schedules"]] == ["k"]
    (tmp_path / "base.yaml").write_text("extends: child.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(child)


def test_factorized_leech_head_needs_a_leech_schedule_and_no_prologue(tmp_path):
    bad = MINIMAL.replace("k_max: 64}", "k_max: 64, ar_head: leech_factorized}")
    with pytest.raises(
        ConfigError, match="schedules.0.ar_head: leech_factorized needs quantizer kind leech"
    ):
        load_config(write(tmp_path, bad))
    ok = bad.replace("ar_head:", "quantizer: {kind: leech, code_dim: 24}, ar_head:")
    assert load_config(write(tmp_path, ok))["schedules"][0]["ar_head"] == "leech_factorized"
    with pytest.raises(ConfigError, match="prologue tokens need the softmax head"):
        load_config(write(tmp_path, ok + "ar: {prologue: {num_tokens: 2}}\n"))


def test_a_named_model_can_be_overridden_key_by_key(tmp_path):
    cfg = load_config(
        write(tmp_path, MINIMAL + "ar: {model: {name: ar_tiny, token_input: codes}}\n")
    )
    assert cfg["ar"]["model"]["dim"] == 32 and cfg["ar"]["model"]["token_input"] == "codes"
    with pytest.raises(ConfigError, match="ar.model"):
        load_config(write(tmp_path, MINIMAL + "ar: {model: {name: ar_tiny, token_input: rows}}\n"))
