"""Sampling: logit filters, guidance schedules, presets and grids, generation within K_t, the
sample step's chunks and resume."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import vcq.tokenizer
from vcq import schedules
from vcq.ar import ARConfig, ARModel, save_ar
from vcq.sampling import (
    cfg_logits,
    expand_presets,
    filter_logits,
    generate,
    guidance_scales,
    guidance_strategy,
    power_cosine_ramp,
    presets_for,
    sample_labels,
)

K_VAR = np.array([4] * 4 + [8] * 4 + [16] * 4 + [32] * 4)
K_CONST = np.full(16, 32)


def model():
    torch.manual_seed(0)
    return ARModel(
        ARConfig(vocab_size=32, seq_len=16, num_classes=4, n_layer=2, n_head=2, dim=32)
    ).eval()


def preset(**kw):
    return {
        "name": "p",
        "guidance": "constant",
        "scale": 2.0,
        "power": None,
        "temperature": 1.0,
        "top_k": 0,
        "top_p": 1.0,
        "restrict_to_kt": True,
        **kw,
    }


def test_schedules():
    assert (guidance_scales("none", 5, K_VAR) == 0).all()
    assert (guidance_scales("constant", 5, K_VAR) == 5).all()
    pc = guidance_scales("power-cosine", 10, K_VAR, 1.5)
    t = np.arange(16) / 16
    assert np.allclose(pc, 10 * (1 - np.cos(np.pi * t**1.5)) / 2)
    ca = guidance_scales("codebook-aware", 4, K_VAR)
    assert np.allclose(ca, 4 * (np.log2(K_VAR) - 2) / 3)
    assert np.allclose(guidance_scales("codebook-aware", 4, K_VAR, 1.5), ca * pc / 10)
    with pytest.raises(ValueError, match="unknown guidance"):
        guidance_scales("bogus", 1, K_VAR)


K4 = np.array([2, 4, 16, 256])  # w_t = 0, 1/7, 3/7, 1; t/L = 0, 1/4, 1/2, 3/4


def test_codebook_aware_readings_hand_computed():
    # s = 2, p = 1: r(x) = (1 - cos(pi x))/2, so r(1/4) = (1 - sqrt(2)/2)/2, r(1/2) = 1/2,
    # r(3/4) = (1 + sqrt(2)/2)/2, r(1/7) = (1 - cos(pi/7))/2, r(3/7) = (1 - cos(3 pi/7))/2
    product = guidance_scales("codebook-aware", 2, K4, 1.0, "position")
    assert np.allclose(product, [0, 0.0418427, 0.4285714, 1.7071068], atol=1e-6)
    capacity = guidance_scales("codebook-aware", 2, K4, 1.0, "capacity")
    assert np.allclose(capacity, [0, 0.0990311, 0.7774790, 2.0], atol=1e-6)
    assert np.allclose(guidance_scales("codebook-aware", 2, K4), [0, 2 / 7, 6 / 7, 2])
    # cfg_start is s_t where the shape is 0: Eq. 4 from 1 to 2
    assert np.allclose(
        guidance_scales("codebook-aware", 2, K4, cfg_start=1.0), [1, 8 / 7, 10 / 7, 2]
    )
    with pytest.raises(ValueError, match="ramp_over"):
        guidance_scales("codebook-aware", 2, K4, 1.0, "sideways")


def test_table7_cosine_preset_readings_differ_early():
    # Issue 15: VCQ-Cosine (Kmin 2, Kmax 16384, L 256), Table 7 "scale=10, p=1.5" -> s = 9
    k = schedules.schedule_k_sizes("cosine", 2, 16384, 256)
    product = guidance_scales("codebook-aware", 9, k, 1.5, "position")
    capacity = guidance_scales("codebook-aware", 9, k, 1.5, "capacity")
    eq4 = guidance_scales("codebook-aware", 9, k)
    assert product[10] < 1e-3 and abs(product[50] - 0.11) < 0.01
    assert abs(capacity[50] - 5.0) < 0.1 and abs(eq4[50] - 5.95) < 0.05  # the numbers of docs/ar.md
    assert abs(capacity[10] - 0.65) < 0.01 and abs(eq4[10] - 2.8) < 0.01
    assert product[-1] == pytest.approx(9 * power_cosine_ramp(256, 1.5)[-1]) and capacity[-1] == 9


def test_codebook_aware_on_constant_codebook_is_position_ramp_or_constant():
    # Table 9: on a constant codebook w_t = 1, so the product reading is vanilla power-cosine CFG
    # and the capacity reading is constant CFG
    assert np.allclose(
        guidance_scales("codebook-aware", 3, K_CONST, 1.5, "position"),
        guidance_scales("power-cosine", 3, K_CONST, 1.5),
    )
    assert np.allclose(guidance_scales("codebook-aware", 3, K_CONST, 1.5, "capacity"), 3)


def test_codebook_aware_equals_constant_for_constant_codebook():
    assert np.allclose(
        guidance_scales("codebook-aware", 3, K_CONST), guidance_scales("constant", 3, K_CONST)
    )
    m, lab = model(), torch.tensor([0, 1, 2])
    a = generate(
        m,
        lab,
        K_CONST,
        preset(guidance="codebook-aware", scale=3.0),
        torch.Generator().manual_seed(1),
    )
    b = generate(
        m, lab, K_CONST, preset(guidance="constant", scale=3.0), torch.Generator().manual_seed(1)
    )
    assert torch.equal(a, b)


def test_cfg_equation():
    c, u = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 3.0])
    assert torch.allclose(cfg_logits(c, u, 2.0), 3 * c - 2 * u)


def test_filter_logits():
    x = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    assert torch.isinf(filter_logits(x, top_k=2)[0, 2:]).all()
    kept = ~torch.isinf(filter_logits(x, top_p=0.7))
    assert kept.tolist() == [[True, True, False, False]]


@pytest.mark.parametrize("g", ["none", "constant", "power-cosine", "codebook-aware"])
def test_samples_respect_kt_and_seed(g):
    m, lab = model(), torch.tensor([0, 1, 2, 3])
    p = preset(guidance=g, power=1.5)
    a = generate(m, lab, K_VAR, p, torch.Generator().manual_seed(0))
    b = generate(m, lab, K_VAR, p, torch.Generator().manual_seed(0))
    assert a.shape == (4, 16) and torch.equal(a, b)
    assert (a < torch.as_tensor(K_VAR)).all()


def test_expand_presets_grids_and_schedule_restriction():
    cfg = {
        "presets": [preset(name="a"), preset(name="b", schedules=["cosine"])],
        "grids": [
            {
                "name": "g",
                "guidance": "power-cosine",
                "scales": [1, 2.5],
                "powers": [1.5],
                "temperature": 1.0,
                "schedules": ["constant"],
            }
        ],
    }
    names = [p["name"] for p in expand_presets(cfg)]
    assert names == ["a", "b", "g-s1-p1.5", "g-s2.5-p1.5"]
    assert [p["name"] for p in presets_for(cfg, "cosine")] == ["a", "b"]
    assert [p["name"] for p in presets_for(cfg, "constant")] == ["a", "g-s1-p1.5", "g-s2.5-p1.5"]
    with pytest.raises(ValueError, match="duplicate"):
        expand_presets({"presets": [preset(name="a"), preset(name="a")]})


def test_grid_points_carry_the_reading_and_strategy_column():
    grid = {
        "name": "cap",
        "guidance": "codebook-aware",
        "scales": [3],
        "powers": [1.0],
        "ramp_over": "capacity",
        "cfg_start": 0.5,
    }
    (p,) = expand_presets({"grids": [grid]})
    assert (p["ramp_over"], p["cfg_start"]) == ("capacity", 0.5)
    assert guidance_strategy(p) == "codebook-aware/capacity"
    assert guidance_strategy({**p, "ramp_over": "position"}) == "codebook-aware"
    assert guidance_strategy({**p, "power": None}) == "codebook-aware/eq4"
    assert [q["name"] for q in expand_presets({"grids": [{**grid, "powers": [None, 2]}]})] == [
        "cap-s3",
        "cap-s3-p2",
    ]
    m, lab = model(), torch.tensor([0, 1])
    a = generate(m, lab, K_VAR, {**preset(), **p}, torch.Generator().manual_seed(0))
    assert (a < torch.as_tensor(K_VAR)).all()


class SampleStep:
    """`pipeline_steps/sample.py` in this process for schedule `c` of `c.yaml`, with the AR model
    `ar.pt` and a stand-in tokenizer `tok.pt` (its bytes only feed the chunk key)."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch, run_step):
        self.tmp, self.monkeypatch, self.run_step = tmp, monkeypatch, run_step

    def stand_in_tokenizer(self, scale: float) -> None:
        """Decode token ids as grey levels `id / scale - 1`, 4 pixels wide."""

        class FakeTokenizer(torch.nn.Module):
            def decode_indices(self, idx):
                return (idx.float()[:, None, :, None] / scale - 1).expand(-1, 3, -1, 4)

        self.monkeypatch.setattr(
            vcq.tokenizer, "load_tokenizer", lambda path, map_location="cpu": FakeTokenizer()
        )
        (self.tmp / "tok.pt").write_bytes(b"stand-in: the chunk key hashes it")

    def config(self, k_max: int, preset: dict, **sampling) -> None:
        """One constant schedule `c` of `k_max` and one preset; `sampling` keys beside it."""
        cfg = {
            "experiment": "t",
            "device": "cpu",
            "schedules": [{"name": "c", "kind": "constant", "k_max": k_max}],
            "sampling": {"presets": [preset], **sampling},
        }
        (self.tmp / "c.yaml").write_text(yaml.safe_dump(cfg))

    def run(self, preset: str, *overrides: str) -> Path:
        """Sample `preset` into s/PRESET.npz with `--set` overrides; the output path."""
        out = self.tmp / "s" / f"{preset}.npz"
        self.run_step(
            "sample",
            "--config",
            self.tmp / "c.yaml",
            "--schedule",
            "c",
            "--preset",
            preset,
            "--ar",
            self.tmp / "ar.pt",
            "--tokenizer",
            self.tmp / "tok.pt",
            "--out",
            out,
            *[a for o in overrides for a in ("--set", o)],
        )
        return out


@pytest.fixture
def sample_step(tmp_path, monkeypatch, run_step) -> SampleStep:
    """The sample step in `tmp_path` (see SampleStep)."""
    return SampleStep(tmp_path, monkeypatch, run_step)


def test_sample_step_writes_npz_and_resumes(sample_step, tmp_path):
    sample_step.stand_in_tokenizer(scale=16)
    m = model()
    save_ar(tmp_path / "ar.pt", m, m.cfg, {"k_sizes": K_VAR.tolist()})
    sample_step.config(32, preset(name="p1"), samples_per_class=3, batch_size=4, chunk_size=5)
    out = sample_step.run("p1")
    d = np.load(out, allow_pickle=False)
    assert d["arr_0"].shape == (12, 16, 4, 3) and d["arr_0"].dtype == np.uint8
    # every class 3 times, in the seeded random order (ADM's contiguous IS splits need it)
    assert sorted(d["labels"].tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert d["labels"].tolist() == sample_labels(4, 3, seed=0).tolist() != sorted(d["labels"])
    assert d["tokens"].shape == (12, len(K_VAR)) and d["tokens"].dtype == np.int32
    assert (str(d["schedule"]), str(d["preset"])) == ("c", "p1")
    first = d["arr_0"].copy()
    (out.with_suffix(".chunks") / "00001_img.npy").unlink()  # one chunk lost: only it is redone
    (out.with_suffix(".chunks") / "00001_tok.npy").unlink()
    sample_step.run("p1")
    assert np.array_equal(np.load(out)["arr_0"], first)
    assert sorted(p.name for p in out.parent.iterdir() if p.is_file()) == ["p1.npz"]


def test_sample_chunks_from_other_inputs_are_discarded(sample_step, tmp_path, capfd):
    sample_step.stand_in_tokenizer(scale=8)
    torch.manual_seed(0)
    ar = ARModel(ARConfig(vocab_size=16, seq_len=4, num_classes=2, n_layer=1, n_head=2, dim=16))
    save_ar(tmp_path / "ar.pt", ar, ar.cfg, {"k_sizes": [4, 8, 16, 16]})
    sample_step.config(
        16, {"name": "p", "guidance": "none"}, samples_per_class=4, batch_size=4, chunk_size=4
    )

    def sample(*overrides):
        out = sample_step.run("p", *overrides)
        return np.load(out)["tokens"]

    first = sample()
    assert np.array_equal(sample(), first)  # same inputs: the chunks are reused
    assert not np.array_equal(sample("sampling.seed=999"), first)
    assert "discarding" in capfd.readouterr().err
    torch.manual_seed(1)  # "retrained": same config, other weights
    save_ar(tmp_path / "ar.pt", ARModel(ar.cfg), ar.cfg, {"k_sizes": [4, 8, 16, 16]})
    assert not np.array_equal(sample(), first)
