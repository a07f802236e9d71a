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
        {"name": "d", "kind": "constant", "k_max": 64, "quantizer": {"vcq": {"l2_norm": False}}}
    )
    cfg["schedules"].append(
        {"name": "b", "kind": "constant", "k_max": 64, "quantizer": {"kind": "bsq"}}
    )
    cfg["tokenizer"] = {"quantizer": {"vcq": {"code_dim": 8}, "bsq": {"dim": 7}}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cfg = load_config(path)
    assert tokenizer_section(cfg, "d")["quantizer"]["vcq"] == {
        **tokenizer_section(cfg, "c")["quantizer"]["vcq"],
        "l2_norm": False,
    }
    assert tokenizer_section(cfg, "c")["quantizer"]["vcq"]["code_dim"] == 8
    # a schedule's quantizer holds its own kind's options only, defaults filled
    bsq = tokenizer_section(cfg, "b")["quantizer"]
    assert bsq == {"kind": "bsq", "bsq": {**bsq["bsq"], "dim": 7}} and bsq["bsq"]["tau"] == 1.0


@pytest.mark.parametrize(
    "quantizer, key, why",
    [
        ("{kind: bsq, bsq: {dimm: 6}}", "tokenizer.quantizer.bsq.dimm", "unknown key"),
        ("{kind: bsq, bsq: {dim: 0}}", "tokenizer.quantizer.bsq.dim", "less than the minimum"),
        ("{kind: leech, leech: {shapes: [5^2]}}", "tokenizer.quantizer.leech.shapes.0", "not one"),
        # options of the kind not chosen are checked too (a schedule may choose that kind)
        ("{kind: bsq, vcq: {code_dim: x}}", "tokenizer.quantizer.vcq.code_dim", "not of type"),
        ("{kind: zq}", "tokenizer.quantizer.kind", "unknown quantizer kind 'zq'"),
        # the flat layout of before: the line says where the option goes now
        (
            "{kind: vcq, code_dim: 8}",
            "tokenizer.quantizer.code_dim",
            "tokenizer.quantizer.vcq.code_dim",
        ),
        ("{kind: vcq, zq: {}}", "tokenizer.quantizer.zq", "only the options of a kind"),
    ],
)
def test_quantizer_options_are_checked_per_kind_naming_the_key(tmp_path, quantizer, key, why):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, MINIMAL + f"tokenizer: {{quantizer: {quantizer}}}\n"))
    assert f"'{key}" in str(e.value) and why in str(e.value) and "\n" not in str(e.value)


def test_a_schedules_quantizer_options_are_checked_under_its_key(tmp_path):
    bad = MINIMAL.replace("k_max: 64}", "k_max: 64, quantizer: {kind: bsq, bsq: {tau: 0}}}")
    with pytest.raises(ConfigError, match=r"'schedules.0.quantizer.bsq.tau'"):
        load_config(write(tmp_path, bad))


@pytest.mark.parametrize(
    "quantizer, k_max, capacity",
    [
        ("{kind: bsq, bsq: {dim: 6}}", 128, "exceeds the 64 codes"),
        ("{kind: leech}", 200000, "exceeds the 196560 codes"),
        ("{kind: leech, leech: {shapes: ['4^2']}}", 1105, "exceeds the 1104 codes"),
        ("{kind: vcq_bridge, vcq_bridge: {group: 16}}", 72, "not a multiple of vcq_bridge.group"),
    ],
)
def test_k_max_beyond_the_quantizers_capacity_is_refused_at_load(
    tmp_path, quantizer, k_max, capacity
):
    # every quantizer kind states its capacity: checked here, not as a traceback in training
    text = (
        f"experiment: t\nschedules: [{{name: c, kind: constant, k_max: {k_max}, "
        f"quantizer: {quantizer}}}]\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert "'schedules.0.k_max'" in str(e.value) and capacity in str(e.value)
    assert "\n" not in str(e.value)
    ok = text.replace(f"k_max: {k_max}", "k_max: 64")
    assert load_config(write(tmp_path, ok))["schedules"][0]["k_max"] == 64


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


def test_an_ar_head_must_be_offered_by_the_schedules_quantizer_and_no_prologue(tmp_path):
    bad = MINIMAL.replace("k_max: 64}", "k_max: 64, ar_head: leech_factorized}")
    with pytest.raises(
        ConfigError,
        match="'schedules.0.ar_head': 'leech_factorized' is not a head of quantizer kind 'vcq'",
    ):
        load_config(write(tmp_path, bad))
    ok = bad.replace("ar_head:", "quantizer: {kind: leech}, ar_head:")
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
