"""Issue 14: each fault a user met, reproduced, and the behaviour that replaced it.

Cases 3 (divergence), 5 (image dataset) and 8 (config edits and Snakemake) are tested in
test_faults_training.py and test_workflow.py / test_sbatch*.py; the numbers below follow the issue.
"""

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from vcq.ar import ARConfig, ARModel, load_ar, save_ar
from vcq.config import ConfigError, load_config
from vcq.data.tokens import TokenFileError, TokenWriter, open_tokens, partial_path
from vcq.entropy import read_token_matrix
from vcq.io import StepError, file_sha256
from vcq.metrics.features import DemoNet, load_demo_extractor
from vcq.metrics.fid import evaluate
from vcq.tokenizer import build_tokenizer, load_tokenizer, save_tokenizer
from vcq.train.checkpoint import CheckpointError, load_checkpoint, restore_module, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
SIZES = np.array([4, 8, 16, 16])


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def _last_line(r: subprocess.CompletedProcess) -> str:
    return r.stderr.strip().splitlines()[-1]


def _tokens(path, n=40, k_sizes=SIZES, sha="tok", seed=0, views=2):
    rng = np.random.default_rng(seed)
    tokens = (rng.random((n, views, len(k_sizes))) * k_sizes).astype(np.int64)
    Path(path).unlink(missing_ok=True)
    with TokenWriter(
        path,
        num_rows=n,
        k_sizes=k_sizes,
        view_names=[f"v{i}" for i in range(views)],
        num_classes=3,
        schedule="s",
        tokenizer_sha256=sha,
    ) as w:
        w.write(np.arange(n), tokens, rng.integers(0, 3, n))
        w.finalize()
    return tokens


def _writer(path: Path, num_rows: int, **inputs: str) -> TokenWriter:
    """A one-view token writer of SIZES (3 classes, schedule `s`, tokenizer `x`)."""
    return TokenWriter(
        path,
        num_rows=num_rows,
        k_sizes=SIZES,
        view_names=["v"],
        num_classes=3,
        schedule="s",
        tokenizer_sha256="x",
        **inputs,
    )


# --- 1. stale samples -------------------------------------------------------------------------


def test_1_sample_chunks_from_other_inputs_are_discarded(sample_step, tmp_path, capfd):
    sample_step.stand_in_tokenizer(scale=8)
    torch.manual_seed(0)
    ar = ARModel(ARConfig(vocab_size=16, seq_len=4, num_classes=2, n_layer=1, n_head=2, dim=16))
    save_ar(tmp_path / "ar.pt", ar, ar.cfg, {"k_sizes": SIZES.tolist()})
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
    save_ar(tmp_path / "ar.pt", ARModel(ar.cfg), ar.cfg, {"k_sizes": SIZES.tolist()})
    assert not np.array_equal(sample(), first)


# --- 2. stale FID reference -------------------------------------------------------------------


def test_2_reference_statistics_follow_the_feature_weights(tmp_path):
    rng = np.random.default_rng(0)
    ref = tmp_path / "ref.npz"
    np.savez(ref, arr_0=rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8))
    np.savez(tmp_path / "samples.npz", arr_0=rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8))
    weights = tmp_path / "demo_net.pt"

    def train(seed):
        torch.manual_seed(seed)
        net = DemoNet(num_classes=3, width=8, image_size=16)
        save_checkpoint(
            weights,
            {
                "config": {"num_classes": 3, "width": 8, "image_size": 16},
                "state_dict": net.state_dict(),
            },
        )

    def fd(cache):
        cfg = {
            "eval": {
                "feature_extractor": "demo",
                "demo_weights": str(weights),
                "inception_weights": "",
                "batch_size": 8,
                "num_samples": None,
                "kid_subset_size": 4,
                "pr_neighborhood": 2,
                "is_split_size": 5000,
                "cache_dir": str(tmp_path / cache),
            }
        }
        return evaluate(tmp_path / "samples.npz", ref, cfg)["fd"]

    train(0)
    old = fd("cache")
    train(1)  # the feature network is retrained
    assert fd("cache") == pytest.approx(fd("empty_cache")) and fd("cache") != pytest.approx(old)


# --- 4. token files checked by their readers --------------------------------------------------


def test_4_readers_refuse_incomplete_out_of_range_float_and_foreign_token_files(tmp_path):
    path = tmp_path / "t.h5"
    _tokens(path)
    assert read_token_matrix(path, 0)[0].shape == (40, 4)
    with h5py.File(path, "r+") as f:
        f.attrs["complete"] = False
    with pytest.raises(TokenFileError, match=r"t\.h5: is not a complete token store"):
        read_token_matrix(path, 0)
    _tokens(path)
    with h5py.File(path, "r+") as f:
        f["tokens"][7, 1, 0] = 4  # K_0 = 4
    with pytest.raises(
        TokenFileError, match=r"t\.h5: token 4 at row 7, position 0 is out of range"
    ):
        read_token_matrix(path, 1)
    _tokens(path)
    with h5py.File(path, "r+") as f:
        data = f["tokens"][:]
        del f["tokens"]
        f["tokens"] = data.astype(np.float32)
    with pytest.raises(TokenFileError, match=r"t\.h5: tokens are float32, expected uint16"):
        open_tokens(path)
    _tokens(path)
    with h5py.File(path, "r+") as f:
        del f.attrs["num_classes"]
    with pytest.raises(TokenFileError, match=r"t\.h5: no 'num_classes' entry"):
        open_tokens(path)
    _tokens(path, sha="other")
    with pytest.raises(TokenFileError, match=r"t\.h5: encoded by another tokenizer"):
        read_token_matrix(path, 0, tokenizer_sha256="mine")


def test_4_measure_entropy_step_refuses_an_incomplete_file_in_one_line(tmp_path):
    _tokens(tmp_path / "t.h5")
    with h5py.File(tmp_path / "t.h5", "r+") as f:
        f.attrs["complete"] = False
    r = _cli(
        "pipeline_steps/measure_entropy.py",
        "--tokens",
        tmp_path / "t.h5",
        "--schedule",
        "s",
        "--out-csv",
        tmp_path / "e.csv",
        "--out",
        tmp_path / "e.json",
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert _last_line(r).startswith(f"error: {tmp_path / 't.h5'}: is not a complete token store")
    assert not (tmp_path / "e.json").exists()


# --- 6. checkpoints are not unpickled ---------------------------------------------------------


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("loader", [load_checkpoint, load_tokenizer, load_ar, load_demo_extractor])
def test_6_a_crafted_pickle_payload_is_refused_and_never_runs(tmp_path, loader):
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


def test_6_checkpoints_hold_only_tensors_and_plain_types(tmp_path):
    state = {
        "pos_ema": np.arange(3.0),
        "step": np.int64(4),
        "rng": __import__("vcq.train.checkpoint").train.checkpoint.capture_rng(),
    }
    save_checkpoint(tmp_path / "c.pt", state)
    back = torch.load(tmp_path / "c.pt", weights_only=True)
    assert back["step"] == 4 and torch.equal(
        back["pos_ema"], torch.arange(3.0, dtype=torch.float64)
    )


# --- 7. disk full while encoding --------------------------------------------------------------


def test_7_a_failed_token_write_is_one_line_and_leaves_nothing_complete(tmp_path, monkeypatch):
    w = _writer(tmp_path / "t.h5", 8)
    w.write(np.arange(4), np.zeros((4, 1, 4), int), np.zeros(4, int))

    def full(self, key, value):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(h5py.Dataset, "__setitem__", full)
    with pytest.raises(
        StepError, match=r"^no space left on device while writing .*t\.h5\.partial$"
    ):
        w.write(np.arange(4, 8), np.zeros((4, 1, 4), int), np.zeros(4, int))
    monkeypatch.undo()
    w.close()
    assert not (tmp_path / "t.h5").exists()
    resumed = _writer(tmp_path / "t.h5", 8)
    assert resumed.pending_rows().tolist() == [4, 5, 6, 7]
    resumed.close()


def test_7_rows_that_read_back_wrong_are_not_finalised_and_are_rewritten(tmp_path):
    rng = np.random.default_rng(0)
    tokens = (rng.random((10, 1, 4)) * SIZES).astype(np.int64)
    labels = rng.integers(0, 3, 10)

    def writer():
        return _writer(tmp_path / "t.h5", 10)

    w = writer()
    w.write(np.arange(10), tokens, labels)
    w.close()
    with h5py.File(
        partial_path(tmp_path / "t.h5"), "r+"
    ) as f:  # writes that never reached the disk
        f["tokens"][3] = 0
        f["labels"][5] = -1
    w = writer()
    with pytest.raises(TokenFileError, match=r"2 rows read back differently.*first: row 3"):
        w.finalize()
    assert not (tmp_path / "t.h5").exists()
    w = writer()
    assert w.pending_rows().tolist() == [3, 5]
    w.write(np.array([3, 5]), tokens[[3, 5]], labels[[3, 5]])
    w.finalize()
    with open_tokens(tmp_path / "t.h5") as s:
        assert np.array_equal(s.read(), tokens) and np.array_equal(s.labels, labels)


def test_7_a_partial_token_file_from_other_inputs_is_discarded(tmp_path, capfd):
    def writer(inputs):
        return _writer(tmp_path / "t.h5", 8, inputs_sha256=inputs)

    with writer("data seed 0") as w:
        w.write(np.arange(4), np.zeros((4, 1, 4), int), np.zeros(4, int))
    with writer("data seed 0") as w:
        assert w.pending_rows().tolist() == [4, 5, 6, 7]
    with writer("data seed 1") as w:
        assert w.pending_rows().tolist() == list(range(8))
    assert "discarding stale" in capfd.readouterr().err


@pytest.fixture(scope="module")
def encode_setup(tmp_path_factory, make_encode_setup):
    return make_encode_setup(tmp_path_factory.mktemp("encode"), train_per_class=8, batch_size=4)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 16 KiB tmpfs (root only): a real ENOSPC, not a simulated one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        shutil.which("mount") is None
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)],
            capture_output=True,
            check=False,
        ).returncode
    ):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_7_encoding_onto_a_full_disk_fails_in_one_line_and_resumes(
    encode_setup, tiny_disk, tmp_path
):
    step = "pipeline_steps/encode_tokens.py"
    r = _cli(step, *encode_setup.args("train", tiny_disk / "train.h5"))
    assert r.returncode == 1, r.stderr[-2000:]
    assert (
        _last_line(r)
        == f"error: no space left on device while writing {tiny_disk / 'train.h5.partial'}"
    )
    assert "Exception ignored" not in r.stderr and not (tiny_disk / "train.h5").exists()
    shutil.copy(
        tiny_disk / "train.h5.partial", tmp_path / "train.h5.partial"
    )  # space again: resume
    r = _cli(step, *encode_setup.args("train", tmp_path / "train.h5"))
    assert r.returncode == 0, r.stderr[-2000:]
    fresh = _cli(step, *encode_setup.args("train", tmp_path / "fresh.h5"))
    assert fresh.returncode == 0
    with open_tokens(tmp_path / "train.h5") as a, open_tokens(tmp_path / "fresh.h5") as b:
        assert np.array_equal(a.read(), b.read()) and np.array_equal(a.labels, b.labels)


# --- 9. config validation ---------------------------------------------------------------------


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
def test_9_config_loader_refuses_bad_names_shapes_and_rates(tmp_path, change, key):
    cfg = {
        "experiment": "x",
        "schedules": [{"name": "c", "kind": "constant", "k_max": 8}],
        **change,
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "c.yaml")
    assert key in str(e.value) and "\n" not in str(e.value)


# --- 10. unreadable and mismatched checkpoints ------------------------------------------------


def test_10_truncated_checkpoint_names_the_file_and_what_to_do(tmp_path):
    save_checkpoint(tmp_path / "last.pt", {"model": torch.nn.Linear(4, 4).state_dict(), "step": 3})
    data = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"last\.pt: unreadable checkpoint .*delete it") as e:
        load_checkpoint(tmp_path / "last.pt")
    assert "\n" not in str(e.value)


def test_10_checkpoint_of_another_config_is_one_line(tmp_path):
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


def test_10_training_step_with_a_truncated_last_pt_exits_with_one_line(train_ar_step, tmp_path):
    config, write_tokens = train_ar_step.config, train_ar_step.write_tokens

    cfg = config(2)
    write_tokens(tmp_path / "train.h5", 16, 0)
    write_tokens(tmp_path / "val.h5", 8, 1)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "last.pt").write_bytes(b"PK\x03\x04 cut short")
    r = train_ar_step.attempt(cfg, tmp_path / "a" / "final.pt")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert _last_line(r).startswith(f"error: {tmp_path / 'a' / 'last.pt'}: unreadable checkpoint")


def test_10_a_checkpoint_of_another_model_config_is_moved_aside_not_resumed(
    train_ar_step, tmp_path
):
    config, write_tokens = train_ar_step.config, train_ar_step.write_tokens

    write_tokens(tmp_path / "train.h5", 16, 0)
    write_tokens(tmp_path / "val.h5", 8, 1)
    out = tmp_path / "a" / "final.pt"
    assert train_ar_step.attempt(config(4), out, "--stop-after", "1").returncode == 0
    r = train_ar_step.attempt(config(4), out, "--set", "ar.model={name: ar_tiny, dim: 64}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "last.pt not resumed: its run key changed in config; starting from step 0" in r.stderr
    assert (tmp_path / "a" / "last.stale.pt").exists()


def test_4_ar_training_refuses_tokens_beyond_k_t_in_one_line(train_ar_step, tmp_path):
    config, write_tokens = train_ar_step.config, train_ar_step.write_tokens

    write_tokens(tmp_path / "train.h5", 16, 0)
    write_tokens(tmp_path / "val.h5", 8, 1)
    with h5py.File(tmp_path / "train.h5", "r+") as f:
        f["tokens"][:, :, 3] = 16  # K_t = 16 everywhere
    r = train_ar_step.attempt(config(2), tmp_path / "a" / "final.pt")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "train.h5: token 16 at row" in _last_line(
        r
    ) and "position 3 is out of range" in _last_line(r)
    assert not (tmp_path / "a" / "final.pt").exists()


def test_10_disk_full_while_checkpointing_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
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


def test_10_disk_full_while_checkpointing_on_a_real_full_disk(tiny_disk):
    with pytest.raises(StepError, match=r"^no space left on device while writing .*last\.pt$"):
        save_checkpoint(tiny_disk / "last.pt", {"w": torch.zeros(64 * 1024)})
    assert list(tiny_disk.iterdir()) == []


# --- 11. location-independent checkpoints -----------------------------------------------------


def test_11_same_run_in_two_checkouts_gives_the_same_tokenizer_file(tmp_path):
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


# --- 12. folder manifest in the workflow ------------------------------------------------------


def test_12_folder_data_is_validated_by_the_workflow(snakemake_exe, tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "default.yaml").read_text())
    cfg["data"] = {"source": "folder", "root": str(tmp_path / "mine")}
    cfg["paths"] = {"work_dir": str(tmp_path / "work"), "results_dir": str(tmp_path / "results")}
    cfg["report"]["reference_configs"] = []
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "mine" / "train" / "a").mkdir(parents=True)
    (tmp_path / "mine" / "val" / "b").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "mine" / "train" / "a" / "0.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "mine" / "val" / "b" / "0.png")
    manifest = str(tmp_path / "work" / "demo" / "data" / "manifest.json")

    def snakemake(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [snakemake_exe, "--configfile", str(tmp_path / "c.yaml"), "--cores", "1", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=False,
        )

    r = snakemake(manifest)
    assert r.returncode != 0 and not Path(manifest).exists()
    log = (tmp_path / "work" / "demo" / "logs" / "make_dataset.log").read_text()
    assert log.strip().splitlines()[-1].startswith("error: data.root:")
    assert "different class folders" in log
    (tmp_path / "mine" / "val" / "b").rename(tmp_path / "mine" / "val" / "a")
    (tmp_path / "mine" / "train" / "a" / "bad.png").write_bytes(b"not an image")
    dry = snakemake("-n")
    assert "rule make_dataset" in dry.stdout and manifest in dry.stdout
    r = snakemake(manifest)
    assert r.returncode == 0, r.stderr[-2000:]
    m = yaml.safe_load(Path(manifest).read_text())
    assert m["counts"] == {"train": 1, "val": 1} and m["skipped"]["train"][0].endswith("bad.png")
