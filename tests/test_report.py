import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from vcq import report
from vcq.runfiles import Samples
from vcq.schedules import schedule_k_sizes

ROOT = Path(__file__).resolve().parents[1]
PAPER = yaml.safe_load((ROOT / "config/paper_numbers.yaml").read_text())
DATASETS = [{"name": d["name"], "n": d["n"]} for d in PAPER["table1"]["datasets"]]


def imagenet_cfg():
    rows = [
        ("constant16384", "constant", 16384, 16384),
        ("constant8192", "constant", 8192, 8192),
        ("linear", "linear", 2, 16384),
        ("cosine", "cosine", 2, 16384),
        ("power", "power", 2, 16384),
        ("cosine_large", "cosine", 2, 11264),
    ]
    return {
        "schedules": [
            {"name": n, "kind": k, "k_min": a, "k_max": b, "alpha": 2.5} for n, k, a, b in rows
        ],
        "tokenizer": {"num_tokens": 256, "model": {"image_size": 256}},
        "report": {"n_images": 1281167, "k": 16384},
    }


def test_table1_matches_paper_digits():
    df = report.table1(DATASETS, 16384, [2, 3, 4, 5])
    for row, paper in zip(df.itertuples(), PAPER["table1"]["datasets"], strict=False):
        assert row.log2_N == paper["log2_n"] and row.t_star == paper["t_star"]
    thresholds = df.iloc[len(DATASETS) :]
    assert list(thresholds.log2_N) == [t["bits"] for t in PAPER["table1"]["thresholds"]]
    assert round(thresholds.x_ImageNet.iloc[1]) == 210  # paper: ~209x (268M / 1.28M)
    assert thresholds.x_ImageNet.iloc[2] == pytest.approx(3.4e6, rel=0.02)
    assert thresholds.N.iloc[3] == pytest.approx(7.2e16, rel=0.01)


def test_table2_matches_paper_digits():
    df = report.table2(imagenet_cfg()).set_index("schedule")
    for name, paper in PAPER["table2"].items():
        assert df.loc[name, "k_mean"] == paper["k_mean"]
        assert df.loc[name, "bpp"] == paper["bpp"]
    assert list(df.t_star_theory) == [2, 2, 4, 9, 12, 9]
    assert df.t_star_measured.isna().all()


def test_table2_reads_measured_cliff(tmp_path):
    p = tmp_path / "cosine.json"
    p.write_text(json.dumps({"t_star_measured": 5}))
    df = report.table2(imagenet_cfg(), {"cosine": str(p)}).set_index("schedule")
    assert df.loc["cosine", "t_star_measured"] == 5


def _gen(tmp_path, name, fid, guidance, label="FD (demo features)", **preset):
    p = tmp_path / f"{name}.json"
    p.write_text(
        json.dumps(
            {
                "fid": fid,
                "fd_label": label,
                "preset": {"name": name, "guidance": guidance, **preset},
            }
        )
    )
    return str(p)


def test_table4_best_preset_and_demo_label(tmp_path):
    gens = [
        _gen(tmp_path, "none", 9.0, "none"),
        _gen(tmp_path, "lin", 4.0, "linear"),
        _gen(tmp_path, "ca", 3.0, "codebook_aware"),
        _gen(tmp_path, "cst", 5.0, "constant"),
    ]
    recon = tmp_path / "recon.json"
    recon.write_text(
        json.dumps(
            {
                "psnr": 20.0,
                "psnr_mean_colour_baseline": 13.0,
                "rfid": 2.0,
                "fd_label": "FD (demo features)",
            }
        )
    )
    k_sizes = {
        "cosine": schedule_k_sizes("cosine", 2, 16384),
        "power": schedule_k_sizes("power", 2, 16384),
    }
    df = report.table4(["cosine", "power"], {"cosine": str(recon)}, {"cosine": gens}, k_sizes)
    assert "gFD (demo features)" in df.columns and not any("FID" in c for c in df.columns)
    row = df.iloc[0]
    assert row["gFD (demo features)"] == 3.0 and row.best_preset == "ca"
    assert row["gFD (demo features) w/o CFG"] == 9.0
    assert row[report.PSNR] == 20.0 and row[report.PSNR_BASELINE] == 13.0
    assert np.isnan(df.iloc[1][report.PSNR]) and np.isnan(df.iloc[1]["gFD (demo features)"])
    # no record carries a class accuracy (Inception runs): no class-accuracy columns
    assert report.CLASS_ACC not in df.columns
    notes = report.footnotes(df)
    assert any(n.startswith(report.PSNR) for n in notes)


def test_table4_class_accuracy_columns_and_summary(tmp_path):
    def gen(name, fid, guidance, acc):
        p = tmp_path / f"{name}.json"
        p.write_text(
            json.dumps(
                {
                    "fid": fid,
                    "fd_label": "FD (demo features)",
                    "class_accuracy": acc,
                    "class_accuracy_reference": 0.99,
                    "preset": {"name": name, "guidance": guidance},
                }
            )
        )
        return str(p)

    recon = tmp_path / "recon.json"
    recon.write_text(json.dumps({"psnr": 21.0, "psnr_mean_colour_baseline": 14.0, "rfid": 2.0}))
    gens = [
        gen("nocfg", 9.0, "none", 0.4),
        gen("cfg", 3.0, "power-cosine", 0.8),
        gen("big", 5.0, "power-cosine", 0.9),
    ]
    df = report.table4(
        ["cosine"],
        {"cosine": str(recon)},
        {"cosine": gens},
        {"cosine": schedule_k_sizes("cosine", 2, 64)},
    )
    row = df.iloc[0]
    # the accuracy belongs to the preset with the best gFD, not the highest accuracy
    assert (
        row[report.CLASS_ACC] == 0.8
        and row[report.CLASS_ACC_NOCFG] == 0.4
        and row[report.CLASS_ACC_REAL] == 0.99
    )
    notes = report.table4_notes(df)
    assert any(n.startswith(report.CLASS_ACC + ":") and "chance" in n for n in notes)
    assert any(n.startswith(report.PSNR_BASELINE) for n in notes)
    pos = pd.DataFrame({"t": range(4), "train_loss": [1.0, 1, 1, 1], "val_loss": [2.0, 2, 1, 1]})
    text = report.summary({"experiment": "demo"}, {"table4": df}, {"cosine": pos})
    assert "PSNR 21.00 dB vs 14.00 dB for the mean-colour baseline (+7.00 dB)" in text
    assert "80% with CFG, 40% w/o CFG, 99% on real val images" in text
    assert "val loss 1.500 nats per token" in text
    probe = pd.DataFrame(
        {
            "schedule": ["cosine"] * 2,
            "features": ["codes", "prologue"],
            "k": [4, 2],
            "top1": [24.5, 18.0],
            "top5": [68.5, 58.5],
        }
    )
    text = report.summary({"experiment": "demo"}, {"table6": probe}, {})
    assert "- **cosine**: k = 4: top-1 24.5%, prologue tokens, k = 2: top-1 18.0%" in text


def test_write_table_and_paper_columns(tmp_path):
    df = report.add_paper_columns(
        report.table2(imagenet_cfg()), PAPER["table2"], {"k_mean": "k_mean", "bpp": "bpp"}
    )
    assert (df["k_mean"] == df["k_mean (paper)"]).all()
    paths = report.write_table(df, tmp_path / "table2")
    assert [p.suffix for p in paths] == [".csv", ".md", ".tex"]
    assert pd.read_csv(paths[0]).shape == df.shape
    assert "t_star_measured: empty cell" in paths[1].read_text()


def test_schedule_figure_written(tmp_path):
    ent = pd.DataFrame({"t": range(20), "cond_entropy_bits": np.linspace(10, 0, 20)})
    paths = report.plot_schedules(imagenet_cfg(), tmp_path / "fig2", {"cosine": ent})
    assert all(p.exists() and p.stat().st_size > 1000 for p in paths)


def test_usage_figure_from_recon_metrics(tmp_path):
    usage = [
        {"t": t, "k_t": 2 ** (t + 1), "used": t + 1, "utilization": (t + 1) / 2 ** (t + 1)}
        for t in range(6)
    ]
    paths = report.plot_usage({"cosine": {"usage_per_position": usage}}, tmp_path / "usage")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(
        p.stat().st_size > 1000 for p in paths
    )


def test_probe_and_guidance_tables(tmp_path):
    probe = tmp_path / "cosine.json"
    probe.write_text(json.dumps({"rows": [{"k": 10, "top1": 0.1, "top5": 0.3}], "features": "x"}))
    t6 = report.table6({"cosine": str(probe), "power": str(tmp_path / "missing.json")})
    assert t6.to_dict("records") == [
        {"schedule": "cosine", "features": "codes", "k": 10, "top1": 0.1, "top5": 0.3}
    ]
    gens = [
        _gen(tmp_path, "a", 5.0, "constant"),
        _gen(tmp_path, "b", 4.0, "constant"),
        _gen(tmp_path, "c", 3.0, "codebook-aware", power=1.5),
        _gen(tmp_path, "d", 2.0, "codebook-aware"),
        _gen(tmp_path, "e", 2.5, "codebook-aware", power=1.5, ramp_over="capacity"),
    ]
    t8, notes = report.table_guidance(["cosine"], {"cosine": gens})
    t8 = t8.iloc[0]
    metric = "best gFD (demo features)"
    assert t8[f"constant: {metric}"] == 4.0 and t8[f"codebook-aware: {metric}"] == 3.0
    assert f"power-cosine: {metric}" not in t8
    assert (
        t8[f"codebook-aware/eq4: {metric}"] == 2.0
        and t8[f"codebook-aware/capacity: {metric}"] == 2.5
    )
    assert notes == [
        f"each column: the {metric} over the presets of that guidance strategy (lower is better)"
    ]


def test_guidance_table_tells_empty_by_design_from_not_run(tmp_path):
    gens = {
        "constant": [_gen(tmp_path, "cfg", 5.0, "power-cosine")],
        "cosine": [_gen(tmp_path, "cb", 3.0, "codebook-aware", power=1.0)],
    }
    configured = {
        "constant": {"none", "power-cosine"},
        "cosine": {"none", "power-cosine", "codebook-aware"},
    }
    df, notes = report.table_guidance(["constant", "cosine"], gens, configured)
    text = " ".join(notes)
    assert "codebook-aware: empty where no preset applies this guidance" in text
    assert list(df.columns[1:]) == [
        "power-cosine: best gFD (demo features)",
        "codebook-aware: best gFD (demo features)",
    ]
    # cosine's power-cosine preset is configured but its file is missing: that one is "not run"
    assert f"power-cosine: {report.MISSING_NOTE}" in notes
    assert f"codebook-aware: {report.MISSING_NOTE}" not in notes


def test_line_figures_and_sample_grid(tmp_path):
    loss = pd.DataFrame(
        {"t": range(8), "train_loss": np.linspace(5, 1, 8), "val_loss": np.linspace(6, 2, 8)}
    )
    log = pd.DataFrame({"step": range(5), "loss": 3.0 / np.arange(1, 6)})
    for series, x, ys in (
        ({"cosine": loss}, "t", ["train_loss", "val_loss"]),
        ({"ar": log}, "step", ["loss"]),
    ):
        paths = report.plot_lines(series, x, ys, tmp_path / x, "x", "y")
        assert all(p.stat().st_size > 1000 for p in paths)
    rng = np.random.default_rng(0)
    samples = Samples(
        "cosine",
        "best",
        rng.integers(0, 255, (30, 4, 4, 3), dtype=np.uint8),
        np.repeat(np.arange(3), 10),
    )
    png = report.sample_grid(
        samples, tmp_path / "grid.png", class_names=["circle", "square", "ring"], title="t"
    )
    from PIL import Image

    assert Image.open(png).size[0] > 8 * 4 and png.stat().st_size > 1000


def test_sample_grid_rows_are_classes(tmp_path, monkeypatch):
    shown = {}
    monkeypatch.setattr(
        report,
        "_image_figure",
        lambda grid, out, title, ticks, names, *a: shown.update(
            grid=grid, names=names, title=title
        ),
    )
    images = np.zeros((6, 2, 2, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(6)
    samples = Samples("cosine", "p", images, np.array([1, 0, 1, 0, 2, 2]))
    report.sample_grid(
        samples, tmp_path / "g.png", per_row=2, class_names=["a", "b", "c"], title="demo"
    )
    assert shown["names"] == ["a", "b", "c"] and shown["title"] == "demo"
    assert shown["grid"][0::2, 0::2, 0].tolist() == [[1, 3], [0, 2], [4, 5]]


def test_reconstruction_figure_and_loss_panels(tmp_path):
    originals = np.random.default_rng(0).integers(0, 255, (6, 4, 4, 3), dtype=np.uint8)
    png = report.plot_reconstructions(
        originals,
        {"cosine": originals[::-1]},
        np.array([0, 0, 1, 1, 2, 2]),
        tmp_path / "r.png",
        ["a", "b", "c"],
        "title",
        row_notes={"cosine": "(PSNR 9 dB)"},
    )
    assert png.stat().st_size > 1000
    log = pd.DataFrame(
        {"step": range(5), "l1": 1 / np.arange(1, 6), "quant": 1e-5 * 10.0 ** np.arange(5)}
    )
    panels = [
        {"keys": ["l1"], "ylabel": "L1", "caption": "c1"},
        {"keys": ["quant"], "ylabel": "q", "caption": "c2"},
        {"keys": ["lpips"], "ylabel": "LPIPS", "caption": "absent"},
    ]
    paths = report.plot_panels({"cosine": log}, panels, tmp_path / "curves", "title")
    assert all(p.stat().st_size > 1000 for p in paths)
    with pytest.raises(ValueError, match="no curves"):
        report.plot_panels({"cosine": log}, panels[2:], tmp_path / "none", "title")


def test_n_images_from_the_data_manifest(tmp_path):
    cfg = {"report": {"n_images": None}, "experiment": "x"}
    manifest = tmp_path / "manifest.json"
    with pytest.raises(ValueError, match="report.n_images is not set"):
        report.with_data_manifest(cfg, manifest)
    manifest.write_text(json.dumps({"counts": {"train": 123, "val": 4}, "classes": ["b", "a"]}))
    filled, classes = report.with_data_manifest(cfg, manifest)
    # label order: sorted class folders, as ImageFolderDataset numbers them
    assert (
        filled["report"]["n_images"] == 123
        and classes == ["a", "b"]
        and cfg["report"]["n_images"] is None
    )
    assert report.with_data_manifest({"report": {"n_images": 7}}, None) == (
        {"report": {"n_images": 7}},
        None,
    )


def test_table6_gets_the_papers_probe_numbers_by_schedule_and_k():
    df = pd.DataFrame(
        [
            {"schedule": "cosine", "k": 10, "top1": 40.0, "top5": 60.0},
            {"schedule": "cosine", "k": 256, "top1": 45.0, "top5": 70.0},
            {"schedule": "mine", "k": 10, "top1": 1.0, "top5": 2.0},
        ]
    )
    out = report.add_probe_paper_columns(df, PAPER["table6"])
    assert list(out["top1 (paper)"][:2]) == [43.77, 48.79] and np.isnan(out["top5 (paper)"].iloc[2])


def test_table5_reads_each_rows_experiment_with_paper_digits(tmp_path):
    results = tmp_path / "results"
    rows = []
    for row, exp, model in (("B-B", "exp_bb", "ar_b"), ("B-L", "exp_bl", "ar_l")):
        cfg = tmp_path / f"{exp}.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "experiment": exp,
                    "schedules": [{"name": "cosine", "kind": "cosine", "k_min": 2, "k_max": 64}],
                    "ar": {"model": model},
                    "paths": {"results_dir": str(results), "work_dir": str(tmp_path / "work")},
                }
            )
        )
        rows.append({"row": row, "config": str(cfg), "schedule": "cosine"})
    res = results / "exp_bb"
    (res / "recon").mkdir(parents=True)
    (res / "recon" / "cosine.json").write_text(
        json.dumps({"rfid": 2.5, "psnr": 20.5, "fd_label": "FID"})
    )
    (res / "gen" / "cosine").mkdir(parents=True)
    for name, fid, guidance, is_mean in (
        ("nocfg", 15.0, "none", 100.0),
        ("a", 5.0, "codebook-aware", 200.0),
        ("b", 4.0, "codebook-aware", 220.0),
    ):
        (res / "gen" / "cosine" / f"{name}.json").write_text(
            json.dumps(
                {
                    "fid": fid,
                    "is_mean": is_mean,
                    "precision": 0.8,
                    "recall": 0.5,
                    "fd_label": "FID",
                    "preset": {"name": name, "guidance": guidance},
                }
            )
        )
    df = report.table5(rows, PAPER["table5"]).set_index("row")
    bb = df.loc["B-B"]
    assert (bb["rFID"], bb["psnr"], bb["gFID"], bb["gFID w/o CFG"], bb["is"]) == (
        2.5,
        20.5,
        4.0,
        15.0,
        220.0,
    )
    assert bb["best_preset"] == "b" and bb["ar_model"] == "ar_b"
    assert (bb["gFID (paper)"], bb["gFID w/o CFG (paper)"], bb["recall (paper)"]) == (
        4.79,
        14.80,
        0.452,
    )
    bl = df.loc["B-L"]  # not run yet: empty cells beside the paper's digits
    assert np.isnan(bl["gFID"]) and bl["gFID (paper)"] == 2.75 and bl["ar_model"] == "ar_l"
    assert any(n.startswith("gFID:") for n in report.footnotes(df.reset_index()))


def test_shipped_table5_rows_name_configs_with_their_table7_presets(in_checkout):
    from vcq.config import load_config
    from vcq.sampling import presets_for

    cfg = load_config("config/imagenet/base.yaml")
    rows = cfg["report"]["scaling"]
    assert [r["row"] for r in rows] == list(PAPER["table5"])
    # paper Table 7 (scale S, power p, no-CFG temperature); our scale is S - 1
    table7 = {
        "B-B": (10, 1.5, 0.85),
        "B-L": (4, 0.75, 0.85),
        "B-XL": (5, 0.75, 0.85),
        "L-B": (4, 1.25, 0.90),
        "L-L": (4, 1.25, 0.90),
        "L-XL": (3, 1.0, 0.95),
    }
    models = {"B": "ar_b", "L": "ar_l", "XL": "ar_xl"}
    for r in rows:
        c = load_config(r["config"])
        presets = presets_for(c["sampling"], r["schedule"])
        guided = [p for p in presets if p["name"].startswith("t7-")]
        (nocfg,) = [p for p in presets if p["guidance"] == "none"]
        assert len(guided) == 1, r["row"]
        scale, power, temp = table7[r["row"]]
        assert (guided[0]["guidance"], guided[0]["scale"] + 1, guided[0]["power"]) == (
            "codebook-aware",
            scale,
            power,
        )
        assert nocfg["temperature"] == temp
        tok, ar = r["row"].split("-")
        assert c["ar"]["model"]["name"] == models[ar]
        assert (
            c["tokenizer"]["model"]["name"] == {"B": "tokenizer_base", "L": "tokenizer_large"}[tok]
        )


def test_make_tables_scaling_writes_table5_from_shipped_configs(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "pipeline_steps/make_tables.py",
            "--config",
            "config/imagenet/base.yaml",
            "--scaling",
            "--out-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    df = pd.read_csv(tmp_path / "table5.csv")
    assert list(df.row) == list(PAPER["table5"]) and list(df["gFID (paper)"]) == [
        4.79,
        2.75,
        2.38,
        2.73,
        1.90,
        1.71,
    ]
    assert "w/o CFG: best unguided preset" in (tmp_path / "table5.md").read_text()


def test_table2_notes_state_threshold_and_where_printed_t_star_contradicts_eq2():
    notes = report.table2_notes(imagenet_cfg(), 0.1, PAPER["table2"], PAPER["fig2a_budget_bits"])
    assert any("stays below 0.1 bits" in n for n in notes)
    contradicted = [n.split(":")[0] for n in notes if "contradicts Eq. 2" in n]
    assert contradicted == [
        "cosine",
        "power",
        "cosine_large",
    ]  # linear's ~4 and the constants' 2 agree
    cosine = next(n for n in notes if n.startswith("cosine:"))
    assert (
        "Eq. 2: t* = 9" in cosine and "7 even at Fig. 2a's ~15.6-bit budget, N = 49,667" in cosine
    )


def _step(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, f"pipeline_steps/{script}", "--config", "config/default.yaml", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def _run_files(tmp: Path) -> tuple[dict[str, list[str]], list[str]]:
    """Each report input of the default config's schedules and presets, written by the library's
    writers with different numbers per schedule: ({flag: files in config order}, settings).

    Every file's path names another schedule than the one inside (the next in config order), so
    a reader that trusted paths would put the numbers in the wrong rows."""
    from PIL import Image

    from vcq.config import load_config
    from vcq.io import write_json
    from vcq.runfiles import (
        ENTROPY_COLUMNS,
        write_entropy_csv,
        write_position_loss,
        write_recon_images,
        write_samples,
    )
    from vcq.sampling import presets_for
    from vcq.train.log import JsonlLog

    cfg = load_config(ROOT / "config/default.yaml")
    files: dict[str, list[str]] = {}

    def add(flag: str, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.setdefault(flag, []).append(str(path))
        return path

    names = [n["name"] for n in cfg["schedules"]]
    for i, s in enumerate(names):
        decoy = names[(i + 1) % len(names)]
        usage = [{"t": t, "k_t": 4, "used": 1 + (t + i) % 4, "utilization": 0.5} for t in range(8)]
        write_json(
            add("--recon", tmp / "recon" / f"{decoy}.json"),
            {
                "schedule": s,
                "psnr": 20.0 + i,
                "psnr_mean_colour_baseline": 14.0,
                "rfid": 5.0 - i,
                "fd_label": "FD (demo features)",
                "usage_per_position": usage,
            },
        )
        write_json(
            add("--entropy-json", tmp / "entropy" / f"{decoy}.json"),
            {"schedule": s, "t_star_measured": 3 + i},
        )
        rows = [dict.fromkeys(ENTROPY_COLUMNS, 8 - t - i) | {"t": t} for t in range(8)]
        write_entropy_csv(add("--entropy-csv", tmp / "entropy" / f"{decoy}.csv"), s, rows)
        write_json(
            add("--probe", tmp / "probe" / f"{decoy}.json"),
            {"schedule": s, "rows": [{"features": "codes", "k": 4, "top1": 10.0 + i, "top5": 30}]},
        )
        loss = np.linspace(3, 1, 8) + i
        write_position_loss(
            add("--position-loss", tmp / "ar" / f"{decoy}.csv"), s, loss, loss + 0.5
        )
        for flag in ("--tokenizer-log", "--ar-log"):
            log = JsonlLog(add(flag, tmp / flag.strip("-") / f"{decoy}.jsonl"), s)
            for step in range(4):
                log.write({"step": step, "l1": 1 / (step + 1 + i), "loss": 2.0 + i - step / 4})
        with write_recon_images(
            add("--recon-images", tmp / "images" / f"{decoy}.npz"), s, (3, 4, 4, 3)
        ) as (
            r,
            o,
        ):
            np.load(r, mmap_mode="r+")[:] = 40 * (i + 1)
            np.load(o, mmap_mode="r+")[:] = np.arange(3)[:, None, None, None] * 50
        for j, p in enumerate(presets_for(cfg["sampling"], s)):
            write_json(
                add("--gen", tmp / "gen" / decoy / f"{p['name']}.json"),
                {"schedule": s, "fid": 10.0 - i - j, "fd_label": "FD (demo features)", "preset": p},
            )
            chunk = tmp / "chunks" / f"{decoy}_{p['name']}.npy"
            chunk.parent.mkdir(exist_ok=True)
            np.save(chunk, np.full((6, 4, 4, 3), 30 * (i + j), np.uint8))
            write_samples(
                add("--samples", tmp / "samples" / decoy / f"{p['name']}.npz"),
                s,
                p["name"],
                [chunk],
                np.arange(6) % 3,
            )
    for c in range(3):
        (tmp / "data" / "val" / f"c{c}").mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(tmp / "data" / "val" / f"c{c}" / "0.png")
    data = ["--set", "data.source=folder", "--set", f"data.root={tmp / 'data'}"]
    return files, ["--set", "report.n_images=1200", *data]


TABLE_INPUTS = ["--recon", "--entropy-json", "--gen", "--probe", "--position-loss"]
FIGURE_INPUTS = [
    "--entropy-csv",
    "--position-loss",
    "--recon",
    "--recon-images",
    "--samples",
    "--tokenizer-log",
    "--ar-log",
]


def _args(files: dict[str, list[str]], flags: list[str], order=lambda x: x) -> list[str]:
    return [a for f in flags for a in (f, *order(files[f]))]


def test_tables_name_schedules_from_file_content_not_order(tmp_path):
    files, settings = _run_files(tmp_path / "run")
    outputs = {}
    for name, order in (("config_order", lambda x: x), ("shuffled", lambda x: x[1:] + x[:1])):
        out = tmp_path / name
        r = _step(
            "make_tables.py",
            *settings,
            "--out-dir",
            str(out),
            "--summary",
            str(out / "summary.md"),
            *_args(files, TABLE_INPUTS, order),
        )
        assert r.returncode == 0, r.stderr[-2000:]
        outputs[name] = {p.name: p.read_text() for p in sorted(out.iterdir())}
    assert outputs["config_order"] == outputs["shuffled"]
    t4 = pd.read_csv(tmp_path / "shuffled" / "table4.csv").set_index("schedule")
    assert t4.loc["linear", report.PSNR] == 21.0 and t4.loc["cosine", "rFD (demo features)"] == 3.0
    assert "- **cosine**: val loss 4.500 nats" in outputs["shuffled"]["summary.md"]


def test_tables_refuse_a_missing_schedule_and_an_unnamed_file(tmp_path):
    files, settings = _run_files(tmp_path / "run")
    files["--position-loss"] = files["--position-loss"][:2]
    r = _step("make_tables.py", *settings, "--out-dir", str(tmp_path), *_args(files, TABLE_INPUTS))
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == (
        "error: no position-loss file for schedule 'cosine' (rule train_ar)"
    )
    old = Path(files["--position-loss"][0])
    pd.read_csv(old).drop(columns="schedule").to_csv(old, index=False)
    r = _step("make_tables.py", *settings, "--out-dir", str(tmp_path), *_args(files, TABLE_INPUTS))
    assert r.returncode == 1 and r.stderr.splitlines()[-1] == (
        f"error: {old}: names no schedule (written by an older version); rerun the `train_ar` rule"
    )


def test_figures_name_schedules_from_file_content_not_order(tmp_path):
    files, settings = _run_files(tmp_path / "run")
    pngs = {}
    for name, order in (("config_order", lambda x: x), ("shuffled", lambda x: x[::-1])):
        out = tmp_path / name
        r = _step(
            "plot_figures.py", *settings, "--out-dir", str(out), *_args(files, FIGURE_INPUTS, order)
        )
        assert r.returncode == 0, r.stderr[-2000:]
        pngs[name] = {p.name: p.read_bytes() for p in sorted(out.glob("*.png"))}
    assert len(pngs["shuffled"]) == 5 + 8 + 1  # curves, one grid per (schedule, preset), recon
    assert pngs["config_order"] == pngs["shuffled"]
    files["--samples"].pop()
    r = _step(
        "plot_figures.py", *settings, "--out-dir", str(tmp_path), *_args(files, FIGURE_INPUTS)
    )
    assert r.stderr.splitlines()[-1] == (
        "error: no sample file for schedule 'cosine', preset 'cbcfg' (rule sample)"
    )
