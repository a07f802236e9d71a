"""Tests for the TiTok-style tokenizer: shapes, bounds, gradients, save/load, param counts."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from paper import PAPER

from vcq.config import load_config
from vcq.io import file_sha256
from vcq.schedules import schedule_k_sizes
from vcq.tokenizer import (
    Tokenizer,
    TokenizerConfig,
    build_tokenizer,
    load_tokenizer,
    parameter_breakdown,
    save_tokenizer,
)

MODELS = Path(__file__).resolve().parents[1] / "config" / "models"


def _config(name: str, k_sizes, code_dim: int) -> TokenizerConfig:
    arch = yaml.safe_load((MODELS / f"{name}.yaml").read_text())
    return TokenizerConfig(
        **arch, k_sizes=k_sizes, quantizer={"kind": "vcq", "vcq": {"code_dim": code_dim}}
    )


def _tiny() -> Tokenizer:
    torch.manual_seed(0)
    k_sizes = schedule_k_sizes("cosine", 4, 64, length=32)
    return Tokenizer(_config("tokenizer_tiny", k_sizes, code_dim=8))


def test_shapes_bounds_and_roundtrip():
    model = _tiny().eval()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    recon, out = model(x)
    assert recon.shape == x.shape and out.indices.shape == (3, 32)
    k_sizes = torch.as_tensor(model.k_sizes)
    assert bool((out.indices < k_sizes).all())
    idx, q = model.encode(x)
    assert torch.equal(idx, out.indices)
    images = model.decode_indices(idx)
    assert images.shape == x.shape and images.min() >= -1 and images.max() <= 1
    assert torch.allclose(images, recon.clamp(-1, 1), atol=1e-5)


def test_gradients_reach_encoder():
    model = _tiny()
    recon, out = model(torch.rand(2, 3, 32, 32) * 2 - 1)
    (recon.abs().mean() + out.loss).backward()
    assert model.patch_embed.weight.grad.abs().sum() > 0
    assert model.latents.grad.abs().sum() > 0


def test_save_load_needs_nothing_else(tmp_path):
    model = _tiny().eval()
    path = tmp_path / "tok.pt"
    save_tokenizer(path, model, {"experiment": "t"}, {"step": 3})
    loaded = load_tokenizer(path)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(loaded.encode(x)[0], model.encode(x)[0])


def test_wrong_image_size_message():
    with pytest.raises(ValueError, match="expected 32px images"):
        _tiny().encode(torch.zeros(1, 3, 16, 16))


def _meta_count(name: str, k_max: int) -> int:
    k_sizes = schedule_k_sizes("cosine", 16, k_max, length=256)
    with torch.device("meta"):
        model = Tokenizer(_config(name, k_sizes, code_dim=16))
    return parameter_breakdown(model)["total"]


def test_base_param_count_matches_paper():
    assert abs(_meta_count("tokenizer_base", 16384) / PAPER["table3"]["tokenizer_base"] - 1) < 0.03


def test_large_param_count_is_vit_b_plus_vit_l():
    # 390M, below the paper's 496M (Table 3): see docs/tokenizer.md
    assert 380e6 < _meta_count("tokenizer_large", 11264) < 400e6


def test_recon_eval_psnr_baseline_usage_and_grid(tmp_path, figure_pixels):
    from vcq.data.images import to_uint8_nhwc
    from vcq.metrics.recon import psnr_sum, reconstruct
    from vcq.plotting import save_image_grid

    x = torch.zeros(1, 3, 4, 4)
    assert psnr_sum(x, x + 0.2)[0] == pytest.approx(20.0, abs=1e-4)  # MSE 0.01 on [0, 1]
    model = _tiny().eval()
    torch.manual_seed(1)
    data = [(torch.rand(3, 32, 32) * 2 - 1, 0) for _ in range(5)]
    recons, originals = np.zeros((5, 32, 32, 3), np.uint8), np.zeros((5, 32, 32, 3), np.uint8)
    result = reconstruct(model, data, 2, torch.device("cpu"), recons, originals)
    assert recons.any() and np.array_equal(
        originals, to_uint8_nhwc(torch.stack([x for x, _ in data]))
    )
    assert result["psnr_mean_colour_baseline"] > 0 and len(result["usage_per_position"]) == 32
    assert all(u["used"] <= u["k_t"] for u in result["usage_per_position"])
    shown = np.concatenate([originals[:2], recons[:2]])
    save_image_grid(tmp_path / "g.png", shown, ncol=2)
    # originals above reconstructions, pixel for pixel
    pixels = figure_pixels(tmp_path / "g.png", (64, 64))
    assert np.array_equal(
        pixels, np.concatenate([np.concatenate(pair, axis=1) for pair in (shown[:2], shown[2:])])
    )


def test_mean_colour_baseline_is_per_image():
    """The baseline replaces each image by its own mean colour (not the data set's)."""
    from vcq.metrics.recon import ReconStats

    half = -torch.ones(1, 3, 4, 4)
    half[..., 2:] = 1.0  # half black, half white: mean grey, MSE 0.25 on [0, 1] -> 6.02 dB
    flat = torch.full((1, 3, 4, 4), 0.5)  # one flat colour: its own mean is exact
    stats = ReconStats(torch.tensor([4, 4]))
    stats.update(
        torch.cat([half, half]), torch.cat([half, half]), torch.zeros(2, 2, dtype=torch.long)
    )
    assert stats.result()["psnr_mean_colour_baseline"] == pytest.approx(6.0206, abs=1e-3)
    stats.update(flat, flat, torch.zeros(1, 2, dtype=torch.long))
    assert stats.result()["psnr_mean_colour_baseline"] == pytest.approx(
        (2 * 6.0206 + 100) / 3, abs=1e-3
    )


def test_config_from_section_checks_the_length_and_drops_the_model_name():
    section = {
        "model": {
            "name": "tokenizer_tiny",
            **yaml.safe_load((MODELS / "tokenizer_tiny.yaml").read_text()),
        },
        "num_tokens": 4,
        "quantizer": {"kind": "vcq", "vcq": {"code_dim": 8}},
    }
    cfg = TokenizerConfig.from_section(section, [4, 8, 8, 8])
    assert cfg.num_tokens == 4 and cfg.k_sizes == [4, 8, 8, 8] and cfg.image_size == 32
    with pytest.raises(ValueError, match="3 codebook sizes for 4 tokens"):
        TokenizerConfig.from_section(section, [4, 8, 8])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"patch_size": 5}, "patch_size 5 does not divide 32"),
        ({"dec_heads": 3}, "dec_heads 3 does not divide dec_width 64"),
        ({"quantizer": {"kind": "nope"}}, "unknown quantizer kind 'nope'"),
    ],
)
def test_config_refuses_inconsistent_architectures(change, message):
    arch = yaml.safe_load((MODELS / "tokenizer_tiny.yaml").read_text())
    base = {**arch, "k_sizes": [8] * 4, "quantizer": {"kind": "vcq", "vcq": {"code_dim": 8}}}
    with pytest.raises(ValueError, match=message):
        TokenizerConfig(**{**base, **change})


def test_checkpoints_written_before_the_typed_config_still_load(tmp_path):
    # the earlier spec held the raw config sections and, earlier still, called K_t `sizes`
    from vcq.train.checkpoint import load_checkpoint, save_checkpoint

    model = _tiny().eval()
    save_tokenizer(tmp_path / "new.pt", model, {})
    state = load_checkpoint(tmp_path / "new.pt")
    arch = {k: getattr(model.cfg, k) for k in ("image_size", "patch_size", "mlp_ratio")}
    arch |= {
        f"{p}_{k}": getattr(model.cfg, f"{p}_{k}")
        for p in ("enc", "dec")
        for k in ("width", "depth", "heads")
    }
    # and, before per-kind quantizer options, held every kind's options in one flat mapping
    flat = {"kind": "vcq", "code_dim": 8, "l2_norm": True, "dim": 18, "bridge_group": 8}
    state["spec"] = {
        "model": {"name": "tokenizer_tiny", **arch},
        "num_tokens": model.num_tokens,
        "quantizer": flat,
        "sizes": model.k_sizes,
    }
    save_checkpoint(tmp_path / "old.pt", state)
    typed = load_checkpoint(tmp_path / "new.pt")
    typed["spec"]["quantizer"] = flat
    save_checkpoint(tmp_path / "typed.pt", typed)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    for name in ("old.pt", "typed.pt"):
        old = load_tokenizer(tmp_path / name)
        assert old.cfg.quantizer == {"kind": "vcq", "vcq": {"code_dim": 8, "l2_norm": True}}
        assert torch.equal(old.encode(x)[0], model.encode(x)[0])


def test_same_run_in_two_checkouts_gives_the_same_tokenizer_file(tmp_path):
    spec = {
        "experiment": "x",
        "schedules": [{"name": "c", "kind": "constant", "k_max": 8}],
        "tokenizer": {
            "model": "tokenizer_tiny",
            "num_tokens": 4,
            "quantizer": {"vcq": {"code_dim": 4}},
        },
    }
    hashes = []
    for checkout in ("one", "two"):
        cfg_path = tmp_path / checkout / "config" / "exp.yaml"
        cfg_path.parent.mkdir(parents=True)
        cfg_path.write_text(yaml.safe_dump(spec))
        cfg = load_config(cfg_path.resolve())
        torch.manual_seed(0)
        save_tokenizer(
            tmp_path / checkout / "final.pt", build_tokenizer(cfg["tokenizer"], [8] * 4), cfg
        )
        hashes.append(file_sha256(tmp_path / checkout / "final.pt"))
    assert hashes[0] == hashes[1]
