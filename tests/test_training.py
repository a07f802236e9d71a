"""Shared training plumbing: LR schedule, deterministic batches, RNG capture, checkpoints (atomic,
tensors and plain types only, one-line errors)."""

import contextlib
import errno
import itertools
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from vcq.ar import load_ar
from vcq.config import load_config
from vcq.io import StepError
from vcq.metrics.features import load_demo_extractor
from vcq.numerics import FiniteGuard, NonFiniteError
from vcq.tokenizer import build_tokenizer, load_tokenizer, save_tokenizer
from vcq.train.checkpoint import (
    CheckpointError,
    capture_rng,
    load_checkpoint,
    restore_module,
    restore_rng,
    save_checkpoint,
)
from vcq.train.common import batch_indices, grad_sync, lr_at, micro_batch, param_groups
from vcq.train.log import JsonlLog, Throughput, peak_flops

DEMO = Path(__file__).resolve().parents[1] / "config/default.yaml"


def test_lr_schedule_shape():
    kw = dict(base_lr=1e-4, end_lr=3e-5, warmup_steps=10, peak_steps=20, total_steps=40)
    assert lr_at(0, **kw) == pytest.approx(1e-5)
    assert lr_at(9, **kw) == pytest.approx(1e-4)
    assert lr_at(15, **kw) == pytest.approx(1e-4)  # held at the peak
    assert lr_at(30, **kw) == pytest.approx(1e-4 + (3e-5 - 1e-4) * 0.5)
    assert lr_at(40, **kw) == pytest.approx(3e-5)
    assert lr_at(100, **kw) == pytest.approx(3e-5)


def test_batch_indices_cover_each_epoch_once_and_shard_by_rank():
    n, bs = 10, 3
    seen = np.concatenate([batch_indices(n, bs, s, seed=1) for s in range(10)])  # 30 = 3 epochs
    for e in range(3):
        assert sorted(seen[e * 10 : (e + 1) * 10].tolist()) == list(range(10))
    r0 = batch_indices(n, 2, 3, seed=1, rank=0, world_size=2)
    r1 = batch_indices(n, 2, 3, seed=1, rank=1, world_size=2)
    both = batch_indices(n, 4, 3, seed=1)
    assert np.array_equal(np.concatenate([r0, r1]), both)
    assert np.array_equal(batch_indices(n, bs, 7, seed=1), batch_indices(n, bs, 7, seed=1))


def test_rng_roundtrip():
    state = capture_rng()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_param_groups_exempt_bias_and_norm():
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    decay, no_decay = param_groups(m, 0.03)
    assert decay["weight_decay"] == 0.03 and len(decay["params"]) == 1
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 3


def test_checkpoint_atomic_and_log_rewinds(tmp_path):
    p = tmp_path / "ck.pt"
    assert load_checkpoint(p) is None
    save_checkpoint(p, {"step": 3, "w": torch.ones(2)})
    assert load_checkpoint(p)["step"] == 3
    assert [f.name for f in tmp_path.iterdir()] == ["ck.pt"]  # no temp files left behind
    log = JsonlLog(tmp_path / "log.jsonl", "cosine")
    for s in range(5):
        log.write({"step": s, "loss": float(s)})
    JsonlLog(tmp_path / "log.jsonl", "cosine", resume_step=2)
    assert [r["step"] for r in JsonlLog.read(tmp_path / "log.jsonl")] == [0, 1, 2]


def test_log_names_its_schedule_and_a_resumed_log_equals_an_uninterrupted_one(tmp_path):
    records = [{"step": s, "loss": float(s)} for s in range(5)]
    whole = JsonlLog(tmp_path / "whole.jsonl", "cosine")
    for r in records:
        whole.write(r)
    assert all(r["schedule"] == "cosine" for r in JsonlLog.read(whole.path))
    # a log of a run from before logs named their schedule, resumed at step 2
    old = tmp_path / "old.jsonl"
    old.write_text("".join(json.dumps(r) + "\n" for r in records))
    resumed = JsonlLog(old, "cosine", resume_step=2)
    for r in records[3:]:
        resumed.write(r)
    assert old.read_text() == whole.path.read_text()


def test_progress_heartbeat_lines_go_to_the_named_fd(tmp_path, monkeypatch):
    """Steps log their bar to a file; the heartbeat reaches the terminal fd, rate-limited."""
    import os
    import time

    from vcq.train.log import progress

    read_fd, write_fd = os.pipe()
    monkeypatch.setenv("VCQ_PROGRESS_FD", str(write_fd))
    monkeypatch.setenv("VCQ_PROGRESS_EVERY", "0.05")
    bar = progress(40, desc="train_ar cosine")
    for _ in range(40):
        time.sleep(0.005)
        bar.update(1)
    bar.close()
    bar.close()  # closing twice writes no second final line
    os.close(write_fd)
    lines = os.read(read_fd, 1 << 16).decode().splitlines()
    os.close(read_fd)
    assert 2 <= len(lines) <= 10  # ~0.2 s of work at one line per 0.05 s, plus the final line
    assert all(line.startswith("train_ar cosine: ") for line in lines)
    assert "/40 (" in lines[0] and "ETA" in lines[0] and "/s" in lines[0]
    assert lines[-1].startswith("train_ar cosine: 40/40 (100%)") and "ETA" not in lines[-1]
    monkeypatch.delenv("VCQ_PROGRESS_FD")
    quiet = progress(3, desc="x")
    quiet.update(3)
    quiet.close()
    assert quiet.heartbeat_fd is None


def test_throughput_reports_step_time_rate_data_wait_and_mfu_only_with_a_peak(monkeypatch):
    # start; waiting 0.5..2.0; report at 2.0; report at 3.0; then still
    clock = itertools.chain([0.0, 0.5, 2.0, 2.0, 3.0], itertools.repeat(3.0))
    monkeypatch.setattr("vcq.train.log.time.perf_counter", lambda: next(clock))
    speed = Throughput(100, "tok", flops_per_item=1e6, peak=1e9, world_size=2)
    with speed.waiting():
        pass
    speed.step()
    speed.step()
    assert speed.report() == {"step": "1000ms", "tok/s": "100", "data_wait": "75%", "mfu": "5.0%"}
    speed.step()  # a new interval: 1 step in 1 s, no waiting
    assert speed.report()["tok/s"] == "100"
    cpu = Throughput(8, "img", flops_per_item=1e6, peak=peak_flops(torch.device("cpu")))
    assert "mfu" not in cpu.report()


def test_micro_batch_and_grad_sync():
    assert micro_batch(16, 2, 4, "ar.train.batch_size") == 2
    with pytest.raises(StepError, match="tokenizer.train.batch_size 10 is not divisible by world"):
        micro_batch(10, 2, 2, "tokenizer.train.batch_size")
    calls = []

    class Parallel(torch.nn.Module):
        def no_sync(self):
            calls.append("no_sync")
            return contextlib.nullcontext()

    for last in (False, True):
        with grad_sync(Parallel(), last_micro_step=last), grad_sync(torch.nn.Linear(1, 1), last):
            pass
    assert calls == ["no_sync"]  # only before the last micro-step, only on a data-parallel module


def test_tokenizer_batch_not_divisible_is_one_step_error(tokenizer_cfg, image_folder, tmp_path):
    from vcq.data.images import ImageFolderDataset
    from vcq.train.tokenizer import train

    data = ImageFolderDataset(image_folder(tmp_path / "images", n=2))
    with pytest.raises(StepError, match=r"tokenizer\.train\.batch_size 5 is not divisible"):
        train(tokenizer_cfg(batch_size=5), "cosine", data, tmp_path / "f.pt")


def test_tokenizer_grad_clip_clips_and_logs_the_norm_before_it(
    tokenizer_cfg, image_folder, tmp_path
):
    from vcq.data.images import ImageFolderDataset
    from vcq.train.checkpoint import load_checkpoint
    from vcq.train.tokenizer import train

    data = ImageFolderDataset(image_folder(tmp_path / "images", n=8, shape=(36, 36)))
    for name, clip in (("off", 0.0), ("clipped", 1e-3)):
        train(tokenizer_cfg(steps=3, grad_clip=clip), "cosine", data, tmp_path / name / "f.pt")
    logs = [JsonlLog.read(tmp_path / n / "train_log.jsonl") for n in ("off", "clipped")]
    assert logs[0][0]["grad_norm"] == logs[1][0]["grad_norm"] > 1e-3  # the same first step
    assert logs[1][-1]["disc_grad_norm"] > 0
    weights = [load_checkpoint(tmp_path / n / "f.pt")["state_dict"] for n in ("off", "clipped")]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("loader", [load_checkpoint, load_tokenizer, load_ar, load_demo_extractor])
def test_a_crafted_pickle_payload_is_refused_and_never_runs(tmp_path, loader):
    marker = tmp_path / "pwned"
    torch.save(
        {"model": {}, "spec": _Payload(marker), "state_dict": {}, "config": {}, "extra": {}},
        tmp_path / "last.pt",
    )
    with pytest.raises(
        CheckpointError, match=r"last\.pt: refused, it holds Python objects.*posix\.system"
    ):
        loader(tmp_path / "last.pt")
    assert not marker.exists()


def test_checkpoints_hold_only_tensors_and_plain_types(tmp_path):
    state = {
        "pos_ema": np.arange(3.0),
        "step": np.int64(4),
        "rng": capture_rng(),
    }
    save_checkpoint(tmp_path / "c.pt", state)
    back = torch.load(tmp_path / "c.pt", weights_only=True)
    assert back["step"] == 4 and torch.equal(
        back["pos_ema"], torch.arange(3.0, dtype=torch.float64)
    )


def test_truncated_resume_state_names_the_file_and_says_training_restarts(tmp_path):
    save_checkpoint(tmp_path / "last.pt", {"model": torch.nn.Linear(4, 4).state_dict(), "step": 3})
    data = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        CheckpointError,
        match=r"last\.pt: unreadable checkpoint .*; delete it and rerun the step "
        r"\(its training then starts from step 0\)$",
    ) as e:
        load_checkpoint(tmp_path / "last.pt")
    assert "\n" not in str(e.value)


def test_checkpoint_of_another_config_is_one_line(tmp_path):
    with pytest.raises(
        CheckpointError,
        match=r"last\.pt does not fit this configuration's Linear "
        r"\(size mismatch for weight.*\); delete it",
    ):
        restore_module(
            torch.nn.Linear(4, 4), torch.nn.Linear(4, 8).state_dict(), tmp_path / "last.pt"
        )
    opt = torch.optim.AdamW(torch.nn.Linear(4, 4).parameters())
    other = torch.optim.AdamW([torch.zeros(2, requires_grad=True)]).state_dict()
    with pytest.raises(CheckpointError, match=r"last\.pt does not fit this configuration's AdamW"):
        restore_module(opt, other, tmp_path / "last.pt")


def test_disk_full_while_checkpointing_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "last.pt", {"step": 1})

    def full(obj, f, *a, **k):
        f.write(b"partial")
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . unexpected pos"
        ) from OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(StepError, match=r"^no space left on device while writing .*last\.pt$"):
        save_checkpoint(tmp_path / "last.pt", {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pt") == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_disk_full_while_checkpointing_on_a_real_full_disk(tiny_disk):
    with pytest.raises(StepError, match=r"^no space left on device while writing .*last\.pt$"):
        save_checkpoint(tiny_disk / "last.pt", {"w": torch.zeros(64 * 1024)})
    assert list(tiny_disk.iterdir()) == []


def test_guard_names_the_first_non_finite_step_and_term():
    guard = FiniteGuard()
    guard.observe(1, {"l1": torch.tensor(0.5), "quant": torch.tensor(0.1)})
    guard.check()
    guard.observe(2, {"l1": torch.tensor(0.5), "quant": torch.tensor(float("nan"))})
    guard.observe(3, {"l1": torch.tensor(float("inf")), "quant": torch.tensor(0.1)})
    with pytest.raises(NonFiniteError, match="non-finite quant at step 2"):
        guard.check()


def _tokenizer_file(path: Path) -> Path:
    cfg = load_config(DEMO)
    model = build_tokenizer(cfg["tokenizer"], np.full(cfg["tokenizer"]["num_tokens"], 8))
    save_tokenizer(path, model, cfg, {"schedule": "constant"})
    return path


def test_a_truncated_model_file_names_the_rule_that_writes_it(tmp_path, truncate):
    path = truncate(_tokenizer_file(tmp_path / "final.pt"))
    with pytest.raises(CheckpointError) as e:
        load_tokenizer(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: unreadable checkpoint")
    # a rerun of train_tokenizer resumes from last.pt: no claim that training starts over
    assert msg.endswith("delete it and rerun the `train_tokenizer` rule") and "step 0" not in msg


def test_a_missing_model_file_names_the_rule_that_writes_it(tmp_path):
    with pytest.raises(CheckpointError, match=r"final\.pt: no such checkpoint; the `train_ar`"):
        load_ar(tmp_path / "final.pt")
