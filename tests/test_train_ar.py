"""The AR training step: bit-identical resume, learning; heads and inputs needing the tokenizer."""

import subprocess

import h5py
import numpy as np
import torch
import yaml

from vcq.ar import load_ar
from vcq.config import resolve_model
from vcq.runfiles import read_log, read_position_loss


def test_resume_is_bit_identical(train_ar_step, tmp_path):
    step = train_ar_step
    cfg = step.config(6, grad_accum=2)
    step.run(cfg, tmp_path / "a" / "final.pt")
    step.run(cfg, tmp_path / "b" / "final.pt", "--stop-after", "3")
    assert len(step.losses(tmp_path / "b" / "final.pt")) == 3
    step.run(cfg, tmp_path / "b" / "final.pt")
    assert step.losses(tmp_path / "a" / "final.pt") == step.losses(tmp_path / "b" / "final.pt")


def test_learns_below_unigram_entropy(train_ar_step, figure_pixels, tmp_path):
    out = tmp_path / "m" / "final.pt"
    cfg = train_ar_step.config(60, class_dropout=0.0, dropout=0.0, token_dropout=0.0)
    r = train_ar_step.run(cfg, out)
    _, extra = load_ar(out)
    assert extra["val_loss_nats"] < 0.5 * extra["unigram_entropy_nats"], r.stderr[-2000:]
    name, rows = read_position_loss(tmp_path / "results" / "t" / "ar" / "c_position_loss.csv")
    assert name == "c" and list(rows) == ["t", "train_loss", "val_loss"]
    assert rows["t"].tolist() == list(range(train_ar_step.L))
    assert read_log(out.parent / "train_log.jsonl", "train_ar")[0] == "c"
    assert "unigram entropy" in r.stderr
    figure_pixels(out.parent / "loss.png")


def test_help(train_ar_step, tmp_path):
    cmd = train_ar_step.command(tmp_path / "unused.yaml", tmp_path / "unused.pt")[:2] + ["--help"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and "--val-tokens" in r.stdout


def write_tokenizer(step, quantizer):
    """A tiny tokenizer checkpoint, recorded in the token files as the one that encoded them."""
    from vcq.io import file_sha256
    from vcq.tokenizer import Tokenizer, TokenizerConfig, save_tokenizer

    torch.manual_seed(0)
    model = {k: v for k, v in resolve_model("tokenizer", "tokenizer_tiny").items() if k != "name"}
    tok = Tokenizer(TokenizerConfig(**model, k_sizes=[step.K] * step.L, quantizer=quantizer))
    path = step.tmp / "tok.pt"
    save_tokenizer(path, tok, {})
    for name, seed, n in (("train.h5", 0, 64), ("val.h5", 1, 32)):
        step.write_tokens(step.tmp / name, n, seed, sha=file_sha256(path))
    return path, tok.quantizer.codebook_vectors().detach()


def with_schedule_and_model(cfg, schedule=None, model=None):
    spec = yaml.safe_load(cfg.read_text())
    spec["schedules"][0].update(schedule or {})
    if model:
        spec["ar"]["model"] = {"name": "ar_tiny", **model}
    cfg.write_text(yaml.safe_dump(spec))
    return cfg


def test_factorized_leech_head_trains_resumes_and_stores_the_codebook(train_ar_step, tmp_path):
    from vcq.quantizers.leech import FactorizedLeechHead

    step = train_ar_step
    leech = {"kind": "leech", "leech": {"shapes": ["4^2"]}}
    cfg = with_schedule_and_model(
        step.config(4), {"quantizer": leech, "ar_head": "leech_factorized"}
    )
    tok, codes = write_tokenizer(step, leech)
    step.run(cfg, tmp_path / "a" / "final.pt", "--tokenizer", str(tok))
    step.run(cfg, tmp_path / "b" / "final.pt", "--tokenizer", str(tok), "--stop-after", "2")
    step.run(cfg, tmp_path / "b" / "final.pt", "--tokenizer", str(tok))
    assert step.losses(tmp_path / "a" / "final.pt") == step.losses(tmp_path / "b" / "final.pt")
    model, extra = load_ar(tmp_path / "a" / "final.pt")
    assert model.cfg.head == "leech_factorized"
    labels = FactorizedLeechHead.labels(codes, torch.arange(step.K))
    assert torch.equal(model.output.code_labels.long(), labels)
    assert np.isfinite(extra["val_loss_nats"])


def test_code_vector_input_reads_the_tokenizer_codebook_and_resumes(train_ar_step, tmp_path):
    step = train_ar_step
    cfg = with_schedule_and_model(step.config(4), model={"token_input": "codes"})
    tok, codes = write_tokenizer(step, {"kind": "vcq", "vcq": {"code_dim": 8}})
    step.run(cfg, tmp_path / "a" / "final.pt", "--tokenizer", str(tok))
    step.run(cfg, tmp_path / "b" / "final.pt", "--tokenizer", str(tok), "--stop-after", "2")
    step.run(cfg, tmp_path / "b" / "final.pt", "--tokenizer", str(tok))
    assert step.losses(tmp_path / "a" / "final.pt") == step.losses(tmp_path / "b" / "final.pt")
    model, _ = load_ar(tmp_path / "a" / "final.pt")
    assert torch.equal(model.input_codes, codes) and model.tok_embeddings.weight.shape == (32, 8)


def test_models_that_need_the_codebook_name_the_missing_or_wrong_tokenizer(train_ar_step, tmp_path):
    step = train_ar_step
    cfg = with_schedule_and_model(step.config(2), model={"token_input": "codes"})
    tok, _ = write_tokenizer(step, {"kind": "vcq", "vcq": {"code_dim": 8}})
    cmd = step.command(cfg, tmp_path / "x" / "final.pt")
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode != 0 and "pass --tokenizer" in r.stderr
    step.write_tokens(tmp_path / "train.h5", 64, 0, sha="0" * 64)
    r = subprocess.run(cmd + ["--tokenizer", str(tok)], capture_output=True, text=True)
    assert r.returncode != 0 and "train.h5: encoded by another tokenizer" in r.stderr


def test_ar_training_refuses_tokens_beyond_k_t_in_one_line(train_ar_step, tmp_path, run_python):
    config, write_tokens = train_ar_step.config, train_ar_step.write_tokens

    write_tokens(tmp_path / "train.h5", 16, 0)
    write_tokens(tmp_path / "val.h5", 8, 1)
    with h5py.File(tmp_path / "train.h5", "r+") as f:
        f["tokens"][:, :, 3] = 16  # K_t = 16 everywhere
    r = train_ar_step.attempt(config(2), tmp_path / "a" / "final.pt")
    line = run_python.error_line(r)
    assert "train.h5: token 16 at row" in line and "position 3 is out of range" in line
    assert not (tmp_path / "a" / "final.pt").exists()


def test_diverging_ar_stops_with_one_line(train_ar_step, tmp_path):
    train_ar_step.write_tokens(tmp_path / "train.h5", 64, 0)
    train_ar_step.write_tokens(tmp_path / "val.h5", 32, 1)
    cfg = train_ar_step.config(6, lr=1e10, warmup_steps=0, grad_clip=0.0, log_every=3, ckpt_every=1)
    out = tmp_path / "ar" / "final.pt"
    r = train_ar_step.attempt(cfg, out)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert "training diverged: non-finite" in last and "at step" in last, r.stderr[-2000:]
    assert not out.exists()
