"""The config system: validation errors name the key, defaults fill in, shipped configs load, bad
input is refused in one line when the config is loaded."""

from pathlib import Path

import pytest
import torch
import yaml

from vcq.config import ConfigError, k_sizes_for, load_config, resolve_config, tokenizer_section
from vcq.losses import TokenizerLoss, patch_depth

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "config/default.yaml"
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


@pytest.mark.parametrize(
    "change, key",
    [
        ({"experiment": ".."}, "'experiment'"),
        ({"experiment": "."}, "'experiment'"),
        (
            {"tokenizer": {"model": {"name": "tokenizer_tiny", "patch_size": 5}}},
            "'tokenizer.model.image_size'",
        ),
        (
            {"tokenizer": {"model": {"name": "tokenizer_tiny", "enc_heads": 3}}},
            "'tokenizer.model.enc_width'",
        ),
        ({"ar": {"model": {"name": "ar_tiny", "n_head": 3}}}, "'ar.model.dim'"),
        ({"tokenizer": {"train": {"lr": -1.0e-4}}}, "'tokenizer.train.lr'"),
        ({"ar": {"train": {"lr": 0.0}}}, "'ar.train.lr'"),
        ({"tokenizer": {"train": {"steps": 0}}}, "'tokenizer.train.steps'"),
        ({"tokenizer": {"train": {"warmup_steps": -5}}}, "'tokenizer.train.warmup_steps'"),
    ],
)
def test_config_loader_refuses_bad_names_shapes_and_rates(tmp_path, change, key):
    cfg = {
        "experiment": "x",
        "schedules": [{"name": "c", "kind": "constant", "k_max": 8}],
        **change,
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "c.yaml")
    assert key in str(e.value) and "\n" not in str(e.value)


# bad input knowable from the config: refused when it is loaded (one line naming the key), or
# accepted where the user meant something valid


def demo_child(tmp_path: Path, text: str) -> Path:
    """A config extending the demo's with `text`."""
    path = tmp_path / "c.yaml"
    path.write_text(f"extends: {DEMO}\n{text}")
    return path


def test_numbers_with_a_bare_exponent_are_numbers(tmp_path):
    # YAML 1.1 reads `5e-4` as a string; in a file, in --set and in Snakemake's own reading of the
    # config file (a mapping held in memory) it is the number the user meant
    cfg = load_config(demo_child(tmp_path, "tokenizer: {train: {lr: 5e-4}}"), ["ar.train.lr=1E-3"])
    assert cfg["tokenizer"]["train"]["lr"] == 5e-4 and cfg["ar"]["train"]["lr"] == 1e-3
    raw = yaml.safe_load("tokenizer: {train: {lr: 5e-4}}")
    assert raw["tokenizer"]["train"]["lr"] == "5e-4"  # what Snakemake hands over
    cfg = resolve_config({"extends": str(DEMO), **raw}, ROOT, "snakemake")
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
        load_config(demo_child(tmp_path, "tokenizer: {train: {lr: 5e-4x}}"))


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
        load_config(demo_child(tmp_path, text))


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
        load_config(demo_child(tmp_path, text))


def test_a_batch_that_splits_over_the_ranks_is_accepted(tmp_path):
    text = "tokenizer: {train: {batch_size: 64, grad_accum: 2}}\n"
    text += "resources: {default: {gpus: 4}, train_tokenizer: {nodes: 2}}"
    assert load_config(demo_child(tmp_path, text))["tokenizer"]["train"]["batch_size"] == 64
