import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from vcq.ar import load_ar
from vcq.data.tokens import TokenWriter

ROOT = Path(__file__).resolve().parents[1]
L, V, K = 16, 2, 16


def write_tokens(path, n, seed, sha="x"):
    """Structured tokens: each sequence is a class-dependent arithmetic progression mod K."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    start = rng.integers(0, K, (n, V, 1))
    tok = (start + (labels[:, None, None] + 1) * np.arange(L)) % K
    with TokenWriter(path, num_rows=n, k_sizes=np.full(L, K), view_names=["a", "b"], num_classes=4,
                     schedule="c", tokenizer_sha256=sha) as w:
        w.write(np.arange(n), tok, labels)
        w.finalize()


def config(tmp, steps, **train):
    cfg = {"experiment": "t", "seed": 0, "device": "cpu", "schedules": [{"name": "c", "kind": "constant", "k_max": K}],
           "paths": {"work_dir": str(tmp / "work"), "results_dir": str(tmp / "results")},
           "ar": {"model": "ar_tiny", "train": {"steps": steps, "batch_size": 8, "lr": 3e-3, "lr_end": 3e-4,
                                                "warmup_steps": 2, "peak_steps": 2, "log_every": 1,
                                                "ckpt_every": 1000, "val_batches": 4, **train}}}
    p = tmp / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def run(tmp, cfg, out, *extra):
    write_tokens(tmp / "train.h5", 64, 0) if not (tmp / "train.h5").exists() else None
    write_tokens(tmp / "val.h5", 32, 1) if not (tmp / "val.h5").exists() else None
    cmd = [sys.executable, "pipeline_steps/train_ar.py", "--config", str(cfg), "--schedule", "c",
           "--tokens", str(tmp / "train.h5"), "--val-tokens", str(tmp / "val.h5"), "--out", str(out), *extra]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def losses(out):
    return [json.loads(x)["loss"] for x in (out.parent / "train_log.jsonl").read_text().splitlines()]


def test_resume_is_bit_identical(tmp_path):
    cfg = config(tmp_path, 6, grad_accum=2)
    run(tmp_path, cfg, tmp_path / "a" / "final.pt")
    run(tmp_path, cfg, tmp_path / "b" / "final.pt", "--stop-after", "3")
    assert len(losses(tmp_path / "b" / "final.pt")) == 3
    run(tmp_path, cfg, tmp_path / "b" / "final.pt")
    assert losses(tmp_path / "a" / "final.pt") == losses(tmp_path / "b" / "final.pt")


def test_learns_below_unigram_entropy(tmp_path):
    out = tmp_path / "m" / "final.pt"
    r = run(tmp_path, config(tmp_path, 60, class_dropout=0.0, dropout=0.0, token_dropout=0.0), out)
    _, extra = load_ar(out)
    assert extra["val_loss_nats"] < 0.5 * extra["unigram_entropy_nats"], r.stderr[-2000:]
    rows = (tmp_path / "results" / "t" / "ar" / "c_position_loss.csv").read_text().splitlines()
    assert rows[0] == "t,train_loss,val_loss" and len(rows) == L + 1
    assert (out.parent / "loss.png").exists() and "unigram entropy" in r.stderr


def test_help():
    r = subprocess.run([sys.executable, "pipeline_steps/train_ar.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "--val-tokens" in r.stdout


def write_tokenizer(tmp, quantizer):
    """A tiny tokenizer checkpoint, recorded in the token files as the one that encoded them."""
    from vcq.config import resolve_model
    from vcq.io import file_sha256
    from vcq.tokenizer import Tokenizer, save_tokenizer

    torch.manual_seed(0)
    tok = Tokenizer(resolve_model("tokenizer", "tokenizer_tiny"), L, quantizer, [K] * L)
    path = tmp / "tok.pt"
    save_tokenizer(path, tok, {})
    for name, seed, n in (("train.h5", 0, 64), ("val.h5", 1, 32)):
        write_tokens(tmp / name, n, seed, sha=file_sha256(path))
    return path, tok.quantizer.codebook_vectors().detach()


def with_schedule_and_model(cfg, schedule=None, model=None):
    spec = yaml.safe_load(cfg.read_text())
    spec["schedules"][0].update(schedule or {})
    if model:
        spec["ar"]["model"] = {**yaml.safe_load((ROOT / "config/models/ar_tiny.yaml").read_text()), **model}
    cfg.write_text(yaml.safe_dump(spec))
    return cfg


def test_factorized_leech_head_trains_resumes_and_stores_the_codebook(tmp_path):
    from vcq.quantizers.leech import FactorizedLeechHead

    leech = {"kind": "leech", "code_dim": 24, "shapes": ["4^2"]}
    cfg = with_schedule_and_model(config(tmp_path, 4), {"quantizer": leech, "ar_head": "leech_factorized"})
    tok, codes = write_tokenizer(tmp_path, leech)
    run(tmp_path, cfg, tmp_path / "a" / "final.pt", "--tokenizer", str(tok))
    run(tmp_path, cfg, tmp_path / "b" / "final.pt", "--tokenizer", str(tok), "--stop-after", "2")
    run(tmp_path, cfg, tmp_path / "b" / "final.pt", "--tokenizer", str(tok))
    assert losses(tmp_path / "a" / "final.pt") == losses(tmp_path / "b" / "final.pt")
    model, extra = load_ar(tmp_path / "a" / "final.pt")
    assert model.cfg.head == "leech_factorized"
    assert torch.equal(model.output.code_labels.long(), FactorizedLeechHead.labels(codes, torch.arange(K)))
    assert np.isfinite(extra["val_loss_nats"])


def test_code_vector_input_reads_the_tokenizer_codebook_and_resumes(tmp_path):
    cfg = with_schedule_and_model(config(tmp_path, 4), model={"token_input": "codes"})
    tok, codes = write_tokenizer(tmp_path, {"kind": "vcq", "code_dim": 8})
    run(tmp_path, cfg, tmp_path / "a" / "final.pt", "--tokenizer", str(tok))
    run(tmp_path, cfg, tmp_path / "b" / "final.pt", "--tokenizer", str(tok), "--stop-after", "2")
    run(tmp_path, cfg, tmp_path / "b" / "final.pt", "--tokenizer", str(tok))
    assert losses(tmp_path / "a" / "final.pt") == losses(tmp_path / "b" / "final.pt")
    model, _ = load_ar(tmp_path / "a" / "final.pt")
    assert torch.equal(model.input_codes, codes) and model.tok_embeddings.weight.shape == (32, 8)


def test_models_that_need_the_codebook_name_the_missing_or_wrong_tokenizer(tmp_path):
    cfg = with_schedule_and_model(config(tmp_path, 2), model={"token_input": "codes"})
    tok, _ = write_tokenizer(tmp_path, {"kind": "vcq", "code_dim": 8})
    cmd = [sys.executable, "pipeline_steps/train_ar.py", "--config", str(cfg), "--schedule", "c",
           "--tokens", str(tmp_path / "train.h5"), "--val-tokens", str(tmp_path / "val.h5"),
           "--out", str(tmp_path / "x" / "final.pt")]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0 and "pass --tokenizer" in r.stderr
    write_tokens(tmp_path / "train.h5", 64, 0, sha="0" * 64)
    r = subprocess.run(cmd + ["--tokenizer", str(tok)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0 and "train.h5: encoded by another tokenizer" in r.stderr
