"""Tokenizer losses and the training step: loss weights, LPIPS loading, resume equality, divergence
and unreadable images."""

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml

from vcq.data.images import ImageFolderDataset
from vcq.io import StepError
from vcq.losses import (
    PatchDiscriminator,
    TokenizerLoss,
    diff_augment,
    discriminator_loss,
    generator_adv_loss,
    load_lpips,
    lpips_weights,
)
from vcq.train.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "config/default.yaml"


def test_paper_loss_weights_are_defaults(tokenizer_cfg):
    t = tokenizer_cfg()["tokenizer"]["train"]
    assert (t["l1_weight"], t["lpips_weight"], t["commitment_weight"]) == (1.0, 1.0, 1.0)
    assert (t["disc_weight"], t["gen_adv_weight"]) == (1.0, 0.1)


def test_generator_loss_is_weighted_sum_and_gan_starts_late(tokenizer_cfg):
    torch.manual_seed(0)
    t = tokenizer_cfg(l1_weight=2.0, commitment_weight=0.5, gen_adv_weight=0.3)["tokenizer"][
        "train"
    ]
    loss_fn = TokenizerLoss(t, 32)
    x, recon = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    q = torch.tensor(0.7)
    total, terms = loss_fn.generator(x, recon, q, step=0)
    terms = {k: float(v) for k, v in terms.items()}
    assert "gen_adv" not in terms and total.item() == pytest.approx(
        2 * terms["l1"] + 0.35, rel=1e-5
    )
    torch.manual_seed(1)
    total, terms = loss_fn.generator(x, recon, q, step=2)
    terms = {k: float(v) for k, v in terms.items()}
    expected = 2 * terms["l1"] + 0.35 + 0.3 * terms["gen_adv"]
    assert total.item() == pytest.approx(expected, rel=1e-5)


def test_gan_losses_and_augment():
    real, fake = torch.full((2, 1), 2.0), torch.full((2, 1), -2.0)
    assert discriminator_loss(real, fake, "hinge").item() == 0.0
    assert generator_adv_loss(fake, "hinge").item() == 2.0
    x = torch.rand(3, 3, 32, 32, requires_grad=True)
    y = diff_augment(x)
    y.sum().backward()
    assert y.shape == x.shape and x.grad is not None
    assert PatchDiscriminator(32)(y.detach()).shape[:2] == (3, 1)


def test_missing_lpips_file_names_path(tmp_path):
    with pytest.raises(StepError, match=r"missing\.pth.*tokenizer\.train\.lpips_weights.*VGG16"):
        lpips_weights({"lpips_weights": str(tmp_path / "missing.pth")})


def test_lpips_loads_local_vgg_trunk(tmp_path):
    from torchvision.models import vgg16

    torch.manual_seed(0)
    path = tmp_path / "vgg.pth"
    torch.save(vgg16().state_dict(), path)
    model = load_lpips(path)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert model(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert model(x, -x).item() > 0


@pytest.fixture
def train_run(image_folder, tmp_path):
    """`train_run(cfg, out, stop_at=None)`: tokenizer training on 10 random 40x36 PNGs in
    tmp_path/images; the records of its log."""
    from vcq.data.images import ImageFolderDataset
    from vcq.train.tokenizer import train

    root = image_folder(tmp_path / "images", n=10, shape=(36, 40), seed=123)

    def run(cfg, out, stop_at=None):
        train(cfg, "cosine", ImageFolderDataset(root), out, stop_at=stop_at)
        log = (out.parent / "train_log.jsonl").read_text().splitlines()
        return [json.loads(line) for line in log]

    return run


def test_resume_continues_bit_for_bit(tokenizer_cfg, train_run, tmp_path, figure_pixels):
    cfg = tokenizer_cfg()
    straight = train_run(cfg, tmp_path / "a" / "final.pt")
    train_run(cfg, tmp_path / "b" / "final.pt", stop_at=3)
    resumed = train_run(cfg, tmp_path / "b" / "final.pt")
    assert len(straight) == 6 and "disc" in straight[-1]
    assert resumed == straight
    assert (tmp_path / "b" / "final.pt").exists()
    figure_pixels(tmp_path / "b" / "loss.png")


def test_resume_with_loader_workers_matches_in_process_loading(tokenizer_cfg, train_run, tmp_path):
    straight = train_run(tokenizer_cfg(), tmp_path / "a" / "final.pt")
    workers = tokenizer_cfg(num_workers=2, prefetch_factor=1)
    train_run(workers, tmp_path / "b" / "final.pt", stop_at=2)
    assert train_run(workers, tmp_path / "b" / "final.pt") == straight


def test_device_decoding_trains_resumes_and_keys_the_run(tokenizer_cfg, tmp_path):
    # decode: device on the CPU runs the code a GPU runs (decode_jpeg with device="cpu")
    import numpy as np
    from PIL import Image

    from vcq.train.checkpoint import run_key
    from vcq.train.tokenizer import train

    rng = np.random.default_rng(5)
    for i in range(6):
        (tmp_path / "images" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(rng.integers(0, 256, (44, 48, 3), dtype=np.uint8))
        image.save(tmp_path / "images" / f"c{i % 2}" / f"{i}.{'png' if i == 5 else 'jpg'}")
    bad = tmp_path / "images" / "c0" / "2.jpg"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    data = ImageFolderDataset(tmp_path / "images")

    def run(cfg, out, stop_at=None):
        train(cfg, "cosine", data, out, stop_at=stop_at)
        return [json.loads(x) for x in (out.parent / "train_log.jsonl").read_text().splitlines()]

    straight = run(tokenizer_cfg(decode="device"), tmp_path / "a" / "final.pt")
    workers = tokenizer_cfg(decode="device", num_workers=1, prefetch_factor=1)
    run(workers, tmp_path / "b" / "final.pt", stop_at=3)
    assert run(workers, tmp_path / "b" / "final.pt") == straight
    assert len(straight) == 6 and straight[-1]["skipped_images"] == 1
    assert run(tokenizer_cfg(), tmp_path / "c" / "final.pt") != straight  # resized otherwise
    keys = [run_key(tokenizer_cfg(decode=d)["tokenizer"], "", "", 1) for d in ("pil", "device")]
    assert keys[0] != keys[1]


def test_cli_help(run_python):
    r = run_python("pipeline_steps/train_tokenizer.py", "--help")
    assert r.returncode == 0 and "--schedule" in r.stdout


def test_diverging_tokenizer_stops_with_one_line_and_no_non_finite_checkpoint(
    image_folder, run_python, tmp_path
):
    image_folder(tmp_path / "data" / "train", n=8)
    cfg = {
        "experiment": "t",
        "device": "cpu",
        "seed": 0,
        "schedules": [{"name": "cosine", "kind": "cosine", "k_min": 4, "k_max": 16}],
        "data": {"source": "folder", "root": str(tmp_path / "data")},
        "tokenizer": {
            "model": "tokenizer_tiny",
            "num_tokens": 8,
            "quantizer": {"vcq": {"code_dim": 8}},
            "train": {
                "steps": 4,
                "batch_size": 4,
                "log_every": 2,
                "ckpt_every": 1,
                "warmup_steps": 0,
                "lr": 1e10,
            },
        },
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "tok" / "final.pt"
    r = run_python(
        "pipeline_steps/train_tokenizer.py",
        *("--config", tmp_path / "cfg.yaml", "--schedule", "cosine", "--out", out),
    )
    last = run_python.error_line(r)
    assert "training diverged: non-finite" in last and "at step" in last
    assert not out.exists()
    state = (
        load_checkpoint(tmp_path / "tok" / "last.pt")
        if (tmp_path / "tok" / "last.pt").exists()
        else None
    )
    if state is not None:
        assert all(
            torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point()
        )


def test_truncated_image_is_skipped_and_counted_in_tokenizer_training(
    tokenizer_cfg, image_folder, tmp_path, caplog
):
    from vcq.train.tokenizer import train

    root = image_folder(tmp_path / "images", n=4)
    bad = root / "c0" / "0.png"
    bad.write_bytes(bad.read_bytes()[:60])
    cfg = tokenizer_cfg(num_workers=2, steps=2, grad_accum=1)
    train(cfg, "cosine", ImageFolderDataset(root), tmp_path / "t" / "final.pt")
    records = [json.loads(x) for x in (tmp_path / "t" / "train_log.jsonl").read_text().splitlines()]
    assert records[-1]["skipped_images"] == 1
    assert any(
        "1 unreadable images skipped" in r.message and str(bad) in r.message for r in caplog.records
    )


def test_tokenizer_training_stops_when_more_images_are_unreadable_than_allowed(
    tokenizer_cfg, image_folder, tmp_path
):
    # issue 22 case 4: a run that loses most of its data still succeeded
    from vcq.train.tokenizer import train

    root = image_folder(tmp_path / "images", n=4)
    for bad in sorted(root.rglob("*.png"))[:2]:
        bad.write_bytes(b"not an image")
    cfg = tokenizer_cfg(num_workers=0, steps=2, grad_accum=1)
    with pytest.raises(StepError, match=r"^2 of 4 images under .* data.max_unreadable"):
        train(cfg, "cosine", ImageFolderDataset(root), tmp_path / "t" / "final.pt")
    assert not (tmp_path / "t" / "final.pt").exists()


def test_missing_lpips_weights_stop_tokenizer_training_before_it_starts(tmp_path, run_python):
    # no data folder either: the weights are checked first
    r = run_python(
        "pipeline_steps/train_tokenizer.py",
        *("--config", DEMO, "--schedule", "constant", "--out", tmp_path / "t/final.pt"),
        *("--set", f"data.root={tmp_path / 'nodata'}"),
        *("--set", f"tokenizer.train.lpips_weights={tmp_path / 'vgg.pth'}"),
    )
    line = run_python.error_line(r)
    assert line.startswith(f"error: {tmp_path / 'vgg.pth'}: LPIPS trunk weights not found")
    assert "tokenizer.train.lpips_weights" in line


def test_stop_after_does_not_claim_a_final_model(image_folder, run_step, tmp_path, capfd):
    image_folder(tmp_path / "data/train", n=4, shape=(20, 20))
    cfg = {
        "extends": str(DEMO),
        "data": {"source": "folder", "root": str(tmp_path / "data")},
        "tokenizer": {"train": {"steps": 2, "batch_size": 2, "disc_start": 2, "ckpt_every": 1}},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "t/final.pt"
    args = ("--config", tmp_path / "c.yaml", "--schedule", "constant", "--out", out)
    run_step("train_tokenizer", *args, "--stop-after", "1")
    err = capfd.readouterr().err
    assert f"stopped after step 1 of 2, no {out} yet" in err
    assert "wrote" not in err and not out.exists()
    run_step("train_tokenizer", *args)
    assert f"wrote {out}" in capfd.readouterr().err and out.exists()
    logging.shutdown()


@pytest.mark.slow
def test_under_torchrun_only_rank_0_says_it_wrote_the_model(image_folder, tmp_path, run_python):
    image_folder(tmp_path / "data/train", n=8, shape=(20, 20))
    cfg = {
        "extends": str(DEMO),
        "device": "cpu",
        "data": {"source": "folder", "root": str(tmp_path / "data")},
        "tokenizer": {"train": {"steps": 2, "batch_size": 4, "disc_start": 2, "ckpt_every": 1}},
        "resources": {"train_tokenizer": {"gpus": 2}},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "t/final.pt"
    r = run_python(
        *("-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"),
        "pipeline_steps/train_tokenizer.py",
        *("--config", tmp_path / "c.yaml", "--schedule", "constant", "--out", out),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count(f"wrote {out}") == 1 and r.stderr.count("training tokenizer") == 1
    assert out.exists()
