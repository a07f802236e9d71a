"""Tokenizer losses and the training step: loss weights, LPIPS loading, resume equality."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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

ROOT = Path(__file__).resolve().parents[1]


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


def test_resume_continues_bit_for_bit(tokenizer_cfg, train_run, tmp_path):
    cfg = tokenizer_cfg()
    straight = train_run(cfg, tmp_path / "a" / "final.pt")
    train_run(cfg, tmp_path / "b" / "final.pt", stop_at=3)
    resumed = train_run(cfg, tmp_path / "b" / "final.pt")
    assert len(straight) == 6 and "disc" in straight[-1]
    assert resumed == straight
    assert (tmp_path / "b" / "final.pt").exists() and (tmp_path / "b" / "loss.png").exists()


def test_resume_with_loader_workers_matches_in_process_loading(tokenizer_cfg, train_run, tmp_path):
    straight = train_run(tokenizer_cfg(), tmp_path / "a" / "final.pt")
    workers = tokenizer_cfg(num_workers=2, prefetch_factor=1)
    train_run(workers, tmp_path / "b" / "final.pt", stop_at=2)
    assert train_run(workers, tmp_path / "b" / "final.pt") == straight


def test_cli_help():
    r = subprocess.run(
        [sys.executable, str(ROOT / "pipeline_steps/train_tokenizer.py"), "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0 and "--schedule" in r.stdout
