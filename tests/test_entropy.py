"""Entropy cliff: Prop. 1 against Table 1, plug-in estimates against sequences of known entropy."""

import json
import math
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from paper import PAPER

from vcq.entropy import cliff_position, conditional_entropy, main, measured_cliff, read_token_matrix
from vcq.runfiles import read_entropy_csv
from vcq.schedules import schedule_k_sizes

ROOT = Path(__file__).resolve().parents[1]


def naive_conditional_entropy(tokens: np.ndarray) -> np.ndarray:
    """H(x_t | x_<t) from dictionaries of prefix tuples: the obvious reference implementation."""
    n, length = tokens.shape
    out = []
    for t in range(length):
        joint = Counter(map(tuple, tokens[:, : t + 1]))
        prev = Counter(map(tuple, tokens[:, :t]))
        h = lambda c: -sum(v / n * math.log2(v / n) for v in c.values())  # noqa: E731
        out.append(h(joint) - h(prev))
    return np.array(out)


@pytest.mark.parametrize("dataset", PAPER["table1"]["datasets"], ids=lambda d: d["name"])
def test_prop1_reproduces_table1(dataset):
    assert cliff_position(dataset["n"], 16384) == dataset["t_star"]


def test_table1_thresholds_are_where_t_star_steps():
    for m in (2, 3, 4, 5):
        n_m = 16384 ** (m - 1)
        assert cliff_position(n_m, 16384) == m - 1 and cliff_position(n_m + 1, 16384) == m


def test_uniform_first_token_then_deterministic():
    rng = np.random.default_rng(0)
    x0 = np.repeat(np.arange(16), 64)  # exactly uniform over 16 values
    tokens = np.stack([x0, (x0 * 3) % 16, x0 // 2], axis=1)
    r = conditional_entropy(tokens)
    np.testing.assert_allclose(r.cond_entropy, [4.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(r.marginal_entropy, [4.0, 4.0, 3.0], atol=1e-12)
    assert list(r.distinct_prefixes) == [16, 16, 16] and r.distinct_values.tolist() == [16, 16, 8]
    del rng


def test_mixture_has_its_known_entropy():
    # x1 = x0 with probability 1/2, else x0 XOR 1 (binary): H(x1 | x0) = 1 bit exactly in counts.
    x0 = np.repeat([0, 1], 400)
    flip = np.tile(np.repeat([0, 1], 200), 2)
    r = conditional_entropy(np.stack([x0, x0 ^ flip], axis=1))
    np.testing.assert_allclose(r.cond_entropy, [1.0, 1.0], atol=1e-12)


def test_agrees_with_naive_dictionary_implementation():
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 5, size=(3000, 8))
    tokens[:, 3] = tokens[:, 1]  # a deterministic position in the middle
    np.testing.assert_allclose(
        conditional_entropy(tokens).cond_entropy, naive_conditional_entropy(tokens), atol=1e-9
    )


def test_unique_prefixes_give_the_cliff_and_early_stop_is_exact():
    rng = np.random.default_rng(2)
    tokens = rng.integers(0, 1024, size=(500, 12))  # prefixes unique after ~2 tokens
    r = conditional_entropy(tokens)
    assert np.all(r.cond_entropy[3:] == 0.0) and r.distinct_prefixes[-1] == 500
    np.testing.assert_allclose(r.cond_entropy, naive_conditional_entropy(tokens), atol=1e-9)
    assert measured_cliff(r, 0.1) == 2  # x_0, x_1 informative; log2 500 = 9 bits < 2 * 10
    assert r.marginal_entropy[-1] > 8  # marginals are still measured after the stop


def test_measured_cliff_ignores_an_early_redundant_token():
    r = conditional_entropy(np.stack([np.arange(8) % 2, np.arange(8) % 2, np.arange(8)], axis=1))
    assert r.cond_entropy[1] == 0.0 and measured_cliff(r, 0.1) == 3


def test_reads_one_view_or_all_in_chunks(tmp_path, token_store):
    tokens = np.arange(5 * 2 * 3, dtype=np.uint16).reshape(5, 2, 3)
    token_store(tmp_path / "t.h5", tokens, [64, 64, 64])
    one, k = read_token_matrix(tmp_path / "t.h5", 1, chunk_rows=2)
    np.testing.assert_array_equal(one, tokens[:, 1]) and np.testing.assert_array_equal(k, [64] * 3)
    both, _ = read_token_matrix(tmp_path / "t.h5", "all", max_rows=4, chunk_rows=3)
    np.testing.assert_array_equal(both, np.concatenate([tokens[:4, 0], tokens[:4, 1]]))
    assert one.dtype == np.uint16


def _measure_entropy(run_python, tmp_path: Path):
    """The measure_entropy step on `t.h5` (schedule `s`) into `e.csv` and `e.json`, in tmp_path;
    its default --config (config/default.yaml) is relative to the checkout."""
    return run_python(
        "pipeline_steps/measure_entropy.py",
        *("--tokens", tmp_path / "t.h5", "--schedule", "s"),
        *("--out-csv", tmp_path / "e.csv", "--out", tmp_path / "e.json"),
    )


def test_measure_entropy_step_end_to_end(tmp_path, run_python, figure_pixels, token_store):
    rng = np.random.default_rng(3)
    k_sizes = [4, 8, 16, 16]
    tokens = np.stack([rng.integers(0, k, size=(256, 2)) for k in k_sizes], axis=2).astype(
        np.uint16
    )
    token_store(tmp_path / "t.h5", tokens, k_sizes)
    r = _measure_entropy(run_python, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    csv, js = tmp_path / "e.csv", tmp_path / "e.json"
    df, summary = pd.read_csv(csv), json.loads(js.read_text())
    assert list(df.k_t) == k_sizes and df.cond_entropy_bits.iloc[0] == pytest.approx(2.0, abs=0.05)
    assert summary["t_star_theory"] == 3 and summary["n_sequences"] == 256  # 2 + 3 + 4 bits >= 8
    assert (df.cond_entropy_bits <= np.log2(df.k_t) + 1e-9).all()
    assert df.cond_entropy_bits.sum() <= np.log2(256) + 1e-9  # plug-in: H(x_<=L) <= log2 N
    figure_pixels(tmp_path / "e.png")


def _two_token_set(k=8, length=5):
    """All k^2 pairs (x_0, x_1), later tokens a function of the pair: H = log2 k, log2 k, 0, ..."""
    x0, x1 = np.divmod(np.arange(k * k), k)
    later = [(x0 * (t + 1) + x1) % k for t in range(length - 2)]
    return np.stack([x0, x1, *later], axis=1).astype(np.int64)


def _cli(tmp_path, capsys, *argv):
    code = main([*map(str, argv), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    if code:
        return code, err
    name, df = read_entropy_csv(tmp_path / "out.csv")  # the pipeline's format, named by the file
    assert name == Path(argv[0]).stem
    return df, json.loads((tmp_path / "out.json").read_text())


@pytest.mark.parametrize("fmt", ["npy", "npz", "pt", "h5"])
def test_cli_known_answer_in_every_format(tmp_path, capsys, fmt, figure_pixels, token_store):
    import torch

    tokens = _two_token_set()
    path = tmp_path / f"t.{fmt}"
    if fmt == "npy":
        np.save(path, tokens)
    elif fmt == "npz":
        np.savez(path, other=np.zeros(3), tokens=tokens)
    elif fmt == "pt":
        torch.save({"tokens": torch.from_numpy(tokens), "labels": torch.zeros(64)}, path)
    else:
        token_store(path, tokens[:, None].astype(np.uint16), [8] * 5)
    df, summary = _cli(tmp_path, capsys, path, "--k-sizes", "8")
    np.testing.assert_allclose(df.cond_entropy_bits, [3, 3, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(
        df.theory_bound_bits, [3, 3, 0, 0, 0], atol=1e-12
    )  # log2 64 = 2 x log2 8
    assert (
        summary["t_star_measured"] == summary["t_star_theory"] == 2 and summary["n_sequences"] == 64
    )
    assert summary["k_sizes_source"] == "given"
    figure_pixels(tmp_path / "out.png")


def test_cli_infers_sizes_as_max_plus_one_and_reads_schedules(tmp_path, capsys):
    # independent uniform bits at positions 0..3, then a constant: H = 1,1,1,1,0; inferred K =
    # 2,2,2,2,1
    tokens = np.array([[(i >> b) & 1 for b in range(4)] + [0] for i in range(16)])
    np.save(tmp_path / "bits.npy", tokens)
    df, summary = _cli(tmp_path, capsys, tmp_path / "bits.npy", "--threshold", "0.5")
    assert list(df.k_t) == [2, 2, 2, 2, 1] and summary["k_sizes_source"].startswith("inferred")
    np.testing.assert_allclose(df.cond_entropy_bits, [1, 1, 1, 1, 0])
    assert summary["t_star_measured"] == 4 and summary["t_star_theory"] == 4  # 4 x 1 bit = log2 16
    # a schedule spec: Eq. 3 cosine sizes; --n-images moves only the theory
    df, summary = _cli(
        tmp_path, capsys, tmp_path / "bits.npy", "--k-sizes", "cosine:2:16", "--n-images", "1024"
    )
    assert list(df.k_t) == list(schedule_k_sizes("cosine", 2, 16, 5)) and summary["log2_n"] == 10


def test_cli_bad_input_is_one_line_and_nonzero(tmp_path, capsys):
    np.save(tmp_path / "flat.npy", np.arange(5))
    code, err = _cli(tmp_path, capsys, tmp_path / "flat.npy")
    assert (
        code == 2 and "expected integer token ids of shape (N, L)" in err and err.count("\n") == 1
    )
    np.save(tmp_path / "big.npy", np.full((4, 3), 9))
    code, err = _cli(tmp_path, capsys, tmp_path / "big.npy", "--k-sizes", "8")
    assert code == 2 and "token id 9 at position 0 is not below K_t = 8" in err
    code, err = _cli(tmp_path, capsys, tmp_path / "missing.npy")
    assert code == 2 and "no such file" in err


def test_cli_help_runs_as_a_module(run_python):
    out = run_python("-m", "vcq.entropy", "--help")
    assert out.returncode == 0 and "H(x_t | x_<t)" in out.stdout and "--k-sizes" in out.stdout


def test_measure_entropy_step_refuses_an_incomplete_file_in_one_line(
    tmp_path, run_python, token_store
):
    token_store(tmp_path / "t.h5", np.zeros((8, 2, 4), np.uint16), [4, 8, 16, 16])
    with h5py.File(tmp_path / "t.h5", "r+") as f:
        f.attrs["complete"] = False
    line = run_python.error_line(_measure_entropy(run_python, tmp_path))
    assert line.startswith(f"error: {tmp_path / 't.h5'}: is not a complete token store")
    assert not (tmp_path / "e.json").exists()


@pytest.mark.parametrize("suffix", [".npz", ".npy", ".pt"])
def test_the_entropy_cli_refuses_a_truncated_token_file_in_one_line(
    tmp_path, suffix, capfd, truncate
):
    path = tmp_path / f"t{suffix}"
    tokens = np.zeros((100, 16), np.int64)
    save = {".npz": lambda: np.savez(path, tokens=tokens), ".npy": lambda: np.save(path, tokens)}
    save.get(suffix, lambda: torch.save({"tokens": torch.from_numpy(tokens)}, path))()
    truncate(path)
    assert main([str(path), "--k-sizes", "16"]) == 2
    (line,) = capfd.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {path}: ")
    assert "truncated or malformed" in line or "not a readable tensor file" in line
