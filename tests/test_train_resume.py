"""Resume state keyed by what shapes a run: per-rank RNG, 2-rank resume, fresh starts, SIGUSR1."""

import json
import logging
import os
import signal
import socket
import subprocess
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from vcq.config import load_config
from vcq.preempt import EXIT_SLICE
from vcq.train.checkpoint import (
    Checkpointer,
    capture_rng,
    load_checkpoint,
    run_key,
    save_checkpoint,
)
from vcq.train.distributed import DistEnv

ROOT = Path(__file__).resolve().parents[1]


def _same(a, b) -> bool:
    """Whether two checkpoint values are equal (tensors exactly, element by element)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _same_file(a, b) -> bool:
    return _same(load_checkpoint(a), load_checkpoint(b))


def _log(out) -> list[dict]:
    return [json.loads(x) for x in (out.parent / "train_log.jsonl").read_text().splitlines()]


def _env(rank: int = 0, world: int = 1) -> DistEnv:
    return DistEnv(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"))


def test_key_ignores_execution_settings_and_names_what_changed(tmp_path, caplog):
    cfg = {"seed": 0, "ar": {"train": {"lr": 1e-3, "steps": 6, "log_every": 1, "compile": False}}}
    key = run_key(cfg, data="d", upstream="u", world_size=1)
    edited = json.loads(json.dumps(cfg))
    edited["ar"]["train"].update(log_every=5, compile=True)
    assert run_key(edited, "d", "u", 1) == key
    for name, value in (("lr", 5e-4), ("steps", 3), ("batch_size", 16)):
        changed = json.loads(json.dumps(cfg))
        changed["ar"]["train"][name] = value
        assert run_key(changed, "d", "u", 1)["config"] != key["config"], name

    path = tmp_path / "last.pt"
    torch.manual_seed(1)
    Checkpointer(path, key, _env()).save({"step": 3})
    drawn = torch.rand(3)
    torch.manual_seed(2)
    state = Checkpointer(path, key, _env()).load()
    assert state["step"] == 3 and torch.equal(torch.rand(3), drawn)  # the RNG came back

    caplog.set_level(logging.INFO, "vcq")
    assert Checkpointer(path, run_key(cfg, "d", "u", 2), _env()).load() is None
    assert not path.exists() and (tmp_path / "last.stale.pt").exists()
    (line,) = [r.getMessage() for r in caplog.records]
    assert "run key changed in world_size (1 -> 2)" in line and "step 0" in line


def test_each_rank_restores_its_own_rng(tmp_path):
    """Rank 1 gets rank 1's generators back, not rank 0's (last.pt holds one state per rank)."""
    key = run_key({}, "d", "", 2)
    states, draws = [], []
    for rank in (0, 1):
        torch.manual_seed(rank)
        states.append(capture_rng())
        draws.append(torch.rand(2))
    save_checkpoint(tmp_path / "last.pt", {"step": 1, "key": key, "rng": states})
    for rank in (0, 1):
        Checkpointer(tmp_path / "last.pt", key, _env(rank, 2)).load()
        assert torch.equal(torch.rand(2), draws[rank])


def test_cutting_steps_or_changing_lr_retrains_instead_of_resuming(
    tokenizer_cfg, image_folder, tmp_path
):
    from vcq.data.images import ImageFolderDataset
    from vcq.train.tokenizer import train

    data = ImageFolderDataset(image_folder(tmp_path / "images", n=10, shape=(36, 40), seed=1))
    train(tokenizer_cfg(steps=3), "cosine", data, tmp_path / "a" / "final.pt")
    # b: 6 steps done, then the config says 3 (case 1 of issue 22: final.pt held 6 steps)
    train(tokenizer_cfg(), "cosine", data, tmp_path / "b" / "final.pt")
    train(tokenizer_cfg(steps=3), "cosine", data, tmp_path / "b" / "final.pt")
    assert _same_file(tmp_path / "a" / "final.pt", tmp_path / "b" / "final.pt")
    assert _log(tmp_path / "b" / "final.pt") == _log(tmp_path / "a" / "final.pt")
    # c: stopped at step 2 under another lr, then run with a's lr: a fresh run, equal to a
    train(tokenizer_cfg(steps=3, lr=5e-4), "cosine", data, tmp_path / "c" / "final.pt", stop_at=2)
    train(tokenizer_cfg(steps=3), "cosine", data, tmp_path / "c" / "final.pt")
    assert _same_file(tmp_path / "a" / "final.pt", tmp_path / "c" / "final.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(kind: str, cfg, out, stop_at, data) -> None:
    """One training run of `kind` in this process (a rank of a group, or alone)."""
    if kind == "tokenizer":
        from vcq.data.images import ImageFolderDataset
        from vcq.train.tokenizer import train

        train(cfg, "cosine", ImageFolderDataset(data), out, stop_at=stop_at)
    else:
        from vcq.data.tokens import open_tokens
        from vcq.train.ar import ARData, train

        with open_tokens(data / "train.h5") as tr, open_tokens(data / "val.h5") as va:
            train(cfg, "c", ARData(tr, va), out, stop_at=stop_at)


def _rank(rank: int, world: int, ports: list[int], runs: list) -> None:
    """Spawned rank: the runs one after another, each in its own gloo process group."""
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1"
    )
    for port, run in zip(ports, runs, strict=True):
        os.environ["MASTER_PORT"] = str(port)
        _run(*run)


def _two_ranks(runs: list) -> None:
    mp.spawn(_rank, args=(2, [_free_port() for _ in runs], runs), nprocs=2)


def _stop_resume_and_resize(kind: str, cfg, data, tmp_path) -> None:
    """2 ranks straight (a) = 2 ranks stopped at step 3 and resumed (b); c: 1 process stopped at
    step 3, resumed by 2 ranks, starts afresh (its old state moved aside) and so equals a."""
    a, b, c = (tmp_path / n / "final.pt" for n in "abc")
    _run(kind, cfg, c, 3, data)
    _two_ranks(
        [(kind, cfg, out, stop, data) for out, stop in ((a, None), (b, 3), (b, None), (c, None))]
    )
    assert _log(b) == _log(a) and _same_file(a, b)
    assert (c.parent / "last.stale.pt").exists()
    assert _log(c) == _log(a) and _same_file(a, c)


@pytest.mark.slow
def test_two_rank_tokenizer_resume_equals_uninterrupted_and_a_resize_starts_afresh(
    tokenizer_cfg, image_folder, tmp_path
):
    root = image_folder(tmp_path / "images", n=12, shape=(36, 40), seed=2)
    _stop_resume_and_resize("tokenizer", tokenizer_cfg(), root, tmp_path)


def test_two_rank_ar_resume_equals_uninterrupted_and_a_resize_starts_afresh(
    train_ar_step, tmp_path
):
    for name, n, seed in (("train.h5", 64, 0), ("val.h5", 32, 1)):
        train_ar_step.write_tokens(tmp_path / name, n, seed)
    cfg = load_config(train_ar_step.config(6, grad_accum=2))
    _stop_resume_and_resize("ar", cfg, tmp_path, tmp_path)


def test_sigusr1_saves_exits_75_and_the_rerun_equals_an_uninterrupted_run(train_ar_step, tmp_path):
    step = train_ar_step
    cfg = step.config(30)
    straight, stopped = tmp_path / "a" / "final.pt", tmp_path / "b" / "final.pt"
    step.run(cfg, straight)
    proc = subprocess.Popen(
        step.command(cfg, stopped),
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = stopped.parent / "train_log.jsonl"
    # signal once training runs (two steps logged: the handler is installed)
    while proc.poll() is None and len(log.read_text().splitlines() if log.exists() else []) < 2:
        time.sleep(0.01)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_SLICE, err[-2000:]
    saved = load_checkpoint(stopped.parent / "last.pt")["step"]
    assert 2 <= saved < 30 and len(_log(stopped)) == saved and not stopped.exists()
    assert "stopped on request; state saved" in err
    step.run(cfg, stopped)
    assert _log(stopped) == _log(straight) and _same_file(straight, stopped)


class _Stopped(Exception):
    """Raised in place of the slice's exit, so a test can resume in the same process."""


def _stop_at_call(monkeypatch, module, n: int) -> None:
    """`module`'s preempt.stop_requested answers True at its n-th call; end_slice raises."""
    calls = iter(range(1, 10**9))
    monkeypatch.setattr(module.preempt, "stop_requested", lambda *a: next(calls) == n)
    monkeypatch.setattr(module.preempt, "end_slice", lambda *a: (_ for _ in ()).throw(_Stopped()))


def test_probe_stopped_mid_epoch_resumes_exactly_and_keeps_its_result(tmp_path, monkeypatch):
    import vcq.train.probe as probe_mod
    from vcq.metrics.probe import code_features

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    # view 0 weakly informative, view 1 noise: accuracy depends on every step's draws
    tokens = np.stack(
        [(y + (rng.random(120) < 0.6) * rng.integers(1, 3, 120)) % 3, rng.integers(0, 3, 120)], 1
    )
    train, val = tokens[:80, :, None], tokens[80:, 0, None]
    cfg = {"epochs": 3, "lr": 0.05, "weight_decay": 0.0, "batch_size": 16, "train_views": "all"}
    featurize = partial(
        code_features, codebook=torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), k=1
    )
    args = (featurize, train, y[:80], val, y[80:], 3, cfg, 0, "cpu")
    straight = probe_mod.train_probe(*args)
    key = run_key(cfg, "d", "", 1)
    with monkeypatch.context() as m:
        _stop_at_call(m, probe_mod, 7)  # epoch 1 (5 batches an epoch), batch 2
        with pytest.raises(_Stopped):
            probe_mod.train_probe(*args, Checkpointer(tmp_path / "p.pt", key))
    assert load_checkpoint(tmp_path / "p.pt")["epoch"] == 1
    assert probe_mod.train_probe(*args, Checkpointer(tmp_path / "p.pt", key)) == straight
    assert load_checkpoint(tmp_path / "p.pt")["result"] == straight


def test_feature_net_stopped_mid_epoch_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import vcq.train.features as features_mod

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 3, 16, 16), dtype=torch.uint8, generator=gen)
    data = torch.utils.data.TensorDataset(images, torch.arange(20) % 2)
    cfg = {"width": 8, "image_size": 16, "epochs": 3, "lr": 1e-2, "weight_decay": 0.0}

    def loader():
        return torch.utils.data.DataLoader(
            data, batch_size=6, shuffle=True, generator=torch.Generator().manual_seed(0)
        )

    _, straight = features_mod.train_demo_net(loader(), 2, cfg, seed=0)
    key = run_key(cfg, "d", "", 1)
    with monkeypatch.context() as m:
        _stop_at_call(m, features_mod, 6)  # epoch 1 (4 batches an epoch), batch 2
        with pytest.raises(_Stopped):
            features_mod.train_demo_net(loader(), 2, cfg, 0, Checkpointer(tmp_path / "l.pt", key))
    _, resumed = features_mod.train_demo_net(
        loader(), 2, cfg, 0, Checkpointer(tmp_path / "l.pt", key)
    )
    assert _same(resumed, straight)


def test_training_step_with_a_truncated_last_pt_exits_with_one_line(
    train_ar_step, tmp_path, run_python
):
    config, write_tokens = train_ar_step.config, train_ar_step.write_tokens

    cfg = config(2)
    write_tokens(tmp_path / "train.h5", 16, 0)
    write_tokens(tmp_path / "val.h5", 8, 1)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "last.pt").write_bytes(b"PK\x03\x04 cut short")
    r = train_ar_step.attempt(cfg, tmp_path / "a" / "final.pt")
    line = run_python.error_line(r)
    assert line.startswith(f"error: {tmp_path / 'a' / 'last.pt'}: unreadable checkpoint")


def test_a_checkpoint_of_another_model_config_is_moved_aside_not_resumed(train_ar_step, tmp_path):
    config, write_tokens = train_ar_step.config, train_ar_step.write_tokens

    write_tokens(tmp_path / "train.h5", 16, 0)
    write_tokens(tmp_path / "val.h5", 8, 1)
    out = tmp_path / "a" / "final.pt"
    assert train_ar_step.attempt(config(4), out, "--stop-after", "1").returncode == 0
    r = train_ar_step.attempt(config(4), out, "--set", "ar.model={name: ar_tiny, dim: 64}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "last.pt not resumed: its run key changed in config; starting from step 0" in r.stderr
    assert (tmp_path / "a" / "last.stale.pt").exists()
