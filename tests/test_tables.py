"""vcq.report.tables: the builders against the paper's digits, the one writer (paper columns by
metric id, display labels), the registry, and make_tables on run files (all files or none)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from paper import IMAGENET_N, PAPER, table2_schedules
from report_runfiles import (
    ROOT,
    TABLE_INPUTS,
    args,
    entropy_record,
    gen_record,
    recon_record,
    run_files,
    step,
)

from vcq.metrics.records import ProbeMetrics
from vcq.report import MISSING_NOTE, with_data_manifest
from vcq.report import tables as T

DATASETS = [{"name": d["name"], "n": d["n"]} for d in PAPER["table1"]["datasets"]]


@pytest.fixture
def in_checkout(monkeypatch) -> Path:
    """Run from the checkout, where configs' relative paths (e.g. report.paper_numbers) point."""
    monkeypatch.chdir(ROOT)
    return ROOT


def imagenet_cfg(**report):
    return {
        "experiment": "x",
        "schedules": table2_schedules(),
        "tokenizer": {"num_tokens": 256, "model": {"image_size": 256}},
        "sampling": {"presets": []},
        "entropy": {"threshold_bits": 0.1},
        "report": {
            "n_images": IMAGENET_N,
            "k": 16384,
            "datasets": DATASETS,
            "thresholds": [2, 3, 4, 5],
            "paper_comparison": False,
            "paper_numbers": str(ROOT / "config/paper_numbers.yaml"),
            "reference_configs": [],
            "scaling": [],
            **report,
        },
    }


def rendered(name: str, inputs: T.TableInputs) -> pd.DataFrame:
    spec = T.TABLES[name]
    return T.render(spec.build(inputs), spec, inputs)


def test_table1_matches_paper_digits():
    df = T.table1(T.TableInputs(imagenet_cfg())).frame
    for row, paper in zip(df.itertuples(), PAPER["table1"]["datasets"], strict=False):
        assert row.log2_N == paper["log2_n"] and row.t_star == paper["t_star"]
    thresholds = df.iloc[len(DATASETS) :]
    assert list(thresholds.log2_N) == [t["bits"] for t in PAPER["table1"]["thresholds"]]
    printed = [t["x_imagenet"] for t in PAPER["table1"]["thresholds"]]
    # 268M / 1.28M = 209.6: the paper prints ~209, rounding down
    assert thresholds.x_ImageNet.iloc[1] == pytest.approx(printed[1], abs=1)
    assert thresholds.x_ImageNet.iloc[2] == pytest.approx(printed[2], rel=0.02)
    assert thresholds.N.iloc[3] == pytest.approx(7.2e16, rel=0.01)


def test_table2_matches_paper_digits_and_reads_the_measured_cliff():
    df = T.table2_frame(imagenet_cfg()).set_index("schedule")
    for name, paper in PAPER["table2"].items():
        assert df.loc[name, "k_mean"] == paper["k_mean"]
        assert df.loc[name, "bpp"] == paper["bpp"]
    assert list(df.t_star_theory) == [2, 2, 4, 9, 12, 9]
    assert df.t_star_measured.isna().all()
    measured = T.table2_frame(imagenet_cfg(), {"cosine": entropy_record("cosine", 5)})
    assert measured.set_index("schedule").loc["cosine", "t_star_measured"] == 5


def test_table2_notes_state_threshold_and_where_printed_t_star_contradicts_eq2():
    notes = T.table2_notes(imagenet_cfg(), 0.1, PAPER["table2"], PAPER["fig2a_budget_bits"])
    assert any("stays below 0.1 bits" in n for n in notes)
    contradicted = [n.split(":")[0] for n in notes if "contradicts Eq. 2" in n]
    assert contradicted == ["cosine", "power", "cosine_large"]  # linear's ~4 and constants agree
    cosine = next(n for n in notes if n.startswith("cosine:"))
    assert "Eq. 2: t* = 9" in cosine
    assert f"7 even at Fig. 2a's ~{PAPER['fig2a_budget_bits']}-bit budget, N = 49,667" in cosine


def _k64(cfg: dict) -> dict:
    return {
        **cfg,
        "schedules": [
            {"name": "cosine", "kind": "cosine", "k_min": 2, "k_max": 64, "alpha": 2.5},
            {"name": "power", "kind": "power", "k_min": 2, "k_max": 64, "alpha": 2.5},
        ],
        "tokenizer": {"num_tokens": 16, "model": {"image_size": 16}},
    }


def _preset(name: str, guidance: str, **kw) -> dict:
    return {"name": name, "guidance": guidance, **kw}


def test_table4_best_preset_demo_label_and_paper_columns_by_metric_id():
    gens = [
        gen_record("cosine", _preset("none", "none"), 9.0),
        gen_record("cosine", _preset("lin", "power-cosine"), 4.0),
        gen_record("cosine", _preset("ca", "codebook-aware"), 3.0),
    ]
    inputs = T.TableInputs(
        _k64(imagenet_cfg(paper_comparison=True)),
        recon={"cosine": recon_record("cosine", 20.0, 2.0, psnr_mean_colour_baseline=13.0)},
        gen={"cosine": gens},
    )
    table = T.table4(inputs)
    # builders key columns by metric id; the writer labels them
    assert {"psnr", "rfd", "gfd", "gfd_nocfg"} <= set(table.frame.columns)
    df = T.render(table, T.TABLES["table4"], inputs)
    assert "gFD (demo features)" in df.columns and not any("FID" in c for c in df.columns)
    row = df.iloc[0]
    assert row["gFD (demo features)"] == 3.0 and row.best_preset == "ca"
    assert row["gFD (demo features) w/o CFG"] == 9.0 and row["PSNR (dB)"] == 20.0
    # the paper's digits sit beside the metric they belong to, found by id, not by position
    cols = list(df.columns)
    assert cols[cols.index("rFD (demo features)") + 1] == "rFD (demo features) (paper)"
    assert cols[cols.index("gFD (demo features)") + 1] == "gFD (demo features) (paper)"
    power = df.iloc[1]  # no record: only the paper's digits
    assert (
        np.isnan(power["PSNR (dB)"])
        and power["PSNR (dB) (paper)"] == PAPER["table4"]["power"]["psnr"]
    )
    # no record carries a class accuracy (Inception runs): no class-accuracy columns
    assert "class_acc" not in table.frame
    assert any(n.startswith("PSNR (dB): empty") for n in T.footnotes(df))


def test_a_new_column_leaves_paper_digits_on_their_metric():
    spec = T.TableSpec(
        "t",
        "t",
        lambda i: None,
        paper="table4",
        paper_columns={"psnr": "psnr", "gfd": "gfid"},
    )
    frame = pd.DataFrame({"schedule": ["cosine"], "psnr": [1.0], "new": [2.0], "gfd": [3.0]})
    df = T.render(T.Table(frame), spec, T.TableInputs(imagenet_cfg(paper_comparison=True)))
    assert list(df.columns) == [
        "schedule",
        "PSNR (dB)",
        "PSNR (dB) (paper)",
        "new",
        "gFID",
        "gFID (paper)",
    ]
    cosine = PAPER["table4"]["cosine"]
    assert (df["PSNR (dB) (paper)"][0], df["gFID (paper)"][0]) == (cosine["psnr"], cosine["gfid"])


def test_table4_class_accuracy_columns_and_summary():
    gens = [
        gen_record("cosine", _preset("nocfg", "none"), 9.0, class_accuracy=0.4),
        gen_record("cosine", _preset("cfg", "power-cosine"), 3.0, class_accuracy=0.8),
        gen_record("cosine", _preset("big", "power-cosine"), 5.0, class_accuracy=0.9),
    ]
    gens = [g.__class__(**{**g.__dict__, "class_accuracy_reference": 0.99}) for g in gens]
    cfg = _k64(imagenet_cfg())
    cfg["schedules"] = cfg["schedules"][:1]
    pos = pd.DataFrame({"t": range(4), "train_loss": [1.0, 1, 1, 1], "val_loss": [2.0, 2, 1, 1]})
    inputs = T.TableInputs(
        cfg,
        recon={"cosine": recon_record("cosine", 21.0, 2.0)},
        gen={"cosine": gens},
        position_loss={"cosine": pos},
    )
    table = T.table4(inputs)
    row = table.frame.iloc[0]
    # the accuracy belongs to the preset with the best gFD, not the highest accuracy
    assert (row.class_acc, row.class_acc_nocfg, row.class_acc_real) == (0.8, 0.4, 0.99)
    assert any(n.startswith(T.label("class_acc") + ":") and "chance" in n for n in table.notes)
    text = T.summary(inputs, {"table4": table})
    assert "PSNR 21.00 dB vs 14.00 dB for the mean-colour baseline (+7.00 dB)" in text
    assert "80% with CFG, 40% w/o CFG, 99% on real val images" in text
    assert "val loss 1.500 nats per token" in text
    probe = ProbeMetrics(
        "cosine",
        [
            {"features": "codes", "k": 4, "top1": 24.5, "top5": 68.5},
            {"features": "prologue", "k": 2, "top1": 18.0, "top5": 58.5},
        ],
    )
    table6 = T.table6(T.TableInputs(cfg, probe={"cosine": probe}))
    text = T.summary(T.TableInputs(cfg), {"table6": table6})
    assert "- **cosine**: k = 4: top-1 24.5%, prologue tokens, k = 2: top-1 18.0%" in text


def test_table6_gets_the_papers_probe_numbers_by_schedule_and_k():
    probe = {
        "cosine": ProbeMetrics(
            "cosine",
            [
                {"features": "codes", "k": 10, "top1": 40.0, "top5": 60.0},
                {"features": "codes", "k": 256, "top1": 45.0, "top5": 70.0},
                {"features": "prologue", "k": 4, "top1": 1.0, "top5": 2.0},
            ],
        )
    }
    inputs = T.TableInputs(imagenet_cfg(paper_comparison=True), probe=probe)
    out = rendered("table6", inputs)
    cosine = PAPER["table6"]["cosine"]
    assert list(out["top1 (paper)"][:2]) == [cosine["k10"]["top1"], cosine["k256"]["top1"]]
    assert np.isnan(out["top5 (paper)"][2])


def test_guidance_table_columns_and_empty_by_design_vs_not_run():
    cfg = _k64(imagenet_cfg())
    cfg["schedules"] = [
        {"name": "constant", "kind": "constant", "k_min": 64, "k_max": 64, "alpha": 2.5},
        {"name": "cosine", "kind": "cosine", "k_min": 2, "k_max": 64, "alpha": 2.5},
    ]
    cfg["sampling"] = {
        "presets": [
            _preset("cfg", "power-cosine", scale=1.0),
            _preset("cb", "codebook-aware", scale=1.0, power=1.0, schedules=["cosine"]),
            _preset("eq4", "codebook-aware", scale=1.0, schedules=["cosine"]),
        ]
    }
    gens = {
        "constant": [gen_record("constant", _preset("cfg", "power-cosine"), 5.0)],
        "cosine": [
            gen_record("cosine", _preset("cb", "codebook-aware", power=1.0), 3.0),
            gen_record("cosine", _preset("eq4", "codebook-aware"), 2.0),
        ],
    }
    table = T.table8_9(T.TableInputs(cfg, gen=gens))
    df = T.render(table, T.TABLES["table8_9"], T.TableInputs(cfg))
    metric = "best gFD (demo features)"
    assert list(df.columns[1:]) == [
        f"power-cosine: {metric}",
        f"codebook-aware: {metric}",
        f"codebook-aware/eq4: {metric}",
    ]
    assert df.iloc[1][f"codebook-aware/eq4: {metric}"] == 2.0
    text = " ".join(table.notes)
    assert "codebook-aware: empty where no preset applies this guidance" in text
    # cosine's power-cosine preset is configured but its file is missing: that one is "not run"
    assert f"power-cosine: {MISSING_NOTE}" in table.notes
    assert f"codebook-aware: {MISSING_NOTE}" not in table.notes


def test_n_images_from_the_data_manifest(tmp_path):
    cfg = {"report": {"n_images": None}, "experiment": "x"}
    manifest = tmp_path / "manifest.json"
    with pytest.raises(ValueError, match="report.n_images is not set"):
        with_data_manifest(cfg, manifest)
    manifest.write_text(json.dumps({"counts": {"train": 123, "val": 4}, "classes": ["b", "a"]}))
    filled, classes = with_data_manifest(cfg, manifest)
    # label order: sorted class folders, as ImageFolderDataset numbers them
    assert filled["report"]["n_images"] == 123 and classes == ["a", "b"]
    assert cfg["report"]["n_images"] is None
    assert with_data_manifest({"report": {"n_images": 7}}, None) == (
        {"report": {"n_images": 7}},
        None,
    )


def test_table3_counts_the_shipped_paper_models(in_checkout):
    from vcq.config import load_config

    cfg = load_config("config/default.yaml")
    cfg["report"]["n_images"] = 1000
    table = T.table3(T.TableInputs(cfg))
    df = table.frame.set_index(["model", "k_max"])
    assert df.loc[("tokenizer_base", 16384), "params_m"] == 172.42  # code_dim 8 (base.yaml)
    assert df.loc[("ar_b", 16384), "params_diff_pct"] == -3.6
    assert df.loc[("ar_b", 11264), "params_m"] == 103.02  # AR-B of the Large group: -10.4 %
    assert df.loc[("ar_b", 11264), "params_diff_pct"] == -10.4
    assert list(df.loc[("tokenizer_tiny", 64)][["experiment", "part"]]) == ["demo", "tokenizer"]


def test_table5_reads_each_rows_experiment_with_paper_digits_and_baselines(tmp_path):
    from vcq.metrics.records import write_record

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
                    "sampling": {
                        "presets": [
                            _preset("nocfg", "none"),
                            _preset("a", "codebook-aware", scale=1.0),
                            _preset("b", "codebook-aware", scale=2.0),
                        ]
                    },
                    "paths": {"results_dir": str(results), "work_dir": str(tmp_path / "work")},
                }
            )
        )
        rows.append({"row": row, "config": str(cfg), "schedule": "cosine"})
    res = results / "exp_bb"
    write_record(
        res / "recon" / "cosine.json",
        recon_record("cosine", 20.5, 2.5, fd_label="FID", codebook_usage=0.875),
    )
    for name, fd, guidance, is_mean in (
        ("nocfg", 15.0, "none", 100.0),
        ("a", 5.0, "codebook-aware", 200.0),
        ("b", 4.0, "codebook-aware", 220.0),
    ):
        write_record(
            res / "gen" / "cosine" / f"{name}.json",
            gen_record("cosine", _preset(name, guidance), fd, fd_label="FID", is_mean=is_mean),
        )
    cfg = imagenet_cfg(scaling=rows)
    inputs = T.TableInputs(cfg, scaling=T.scaling_rows(cfg))
    df = rendered("table5", inputs).set_index("row")
    bb = df.loc["B-B"]
    assert (bb["rFID"], bb["PSNR (dB)"], bb["gFID"], bb["gFID w/o CFG"], bb["IS"]) == (
        2.5,
        20.5,
        4.0,
        15.0,
        220.0,
    )
    assert bb["Usage (%)"] == 87.5 and bb["best_preset"] == "b" and bb["ar_model"] == "ar_b"
    paper = PAPER["table5"]
    assert (bb["gFID (paper)"], bb["gFID w/o CFG (paper)"], bb["recall (paper)"]) == (
        paper["B-B"]["gfid"],
        paper["B-B"]["gfid_nocfg"],
        paper["B-B"]["recall"],
    )
    bl = df.loc["B-L"]  # not run yet: empty cells beside the paper's digits
    assert np.isnan(bl["gFID"]) and bl["gFID (paper)"] == paper["B-L"]["gfid"]
    assert bl["ar_model"] == "ar_l"
    llamagen = df.loc["LlamaGen-XXL"]  # a baseline row: the paper's digits in the main columns
    (printed,) = [b for b in PAPER["table5_baselines"] if b["method"] == "LlamaGen-XXL"]
    assert (llamagen["gFID"], llamagen["experiment"]) == (printed["gfid"], "(paper)")
    assert np.isnan(llamagen["gFID (paper)"])


def test_shipped_table5_rows_name_configs_with_their_table7_presets(in_checkout):
    from vcq.config import load_config
    from vcq.sampling import presets_for

    cfg = load_config("config/imagenet/base.yaml")
    rows = cfg["report"]["scaling"]
    assert [r["row"] for r in rows] == list(PAPER["table5"])
    # paper Table 7 (scale S, power p, no-CFG temperature); our scale is S - 1 (docs/fidelity.md)
    table7 = PAPER["table7"]
    for schedule, printed in table7["schedules"].items():
        (guided,) = [p for p in presets_for(cfg["sampling"], schedule) if p["name"][:3] == "t7-"]
        assert (guided["scale"] + 1, guided["power"]) == (printed["scale"], printed["power"])
    models = {"B": "ar_b", "L": "ar_l", "XL": "ar_xl"}
    for r in rows:
        c = load_config(r["config"])
        presets = presets_for(c["sampling"], r["schedule"])
        guided = [p for p in presets if p["name"].startswith("t7-")]
        (nocfg,) = [p for p in presets if p["guidance"] == "none"]
        assert len(guided) == 1, r["row"]
        printed = table7["rows"][r["row"]]
        assert (guided[0]["guidance"], guided[0]["scale"] + 1, guided[0]["power"]) == (
            "codebook-aware",
            printed["scale"],
            printed["power"],
        )
        assert nocfg["temperature"] == printed["temperature_nocfg"]
        tok, ar = r["row"].split("-")
        assert c["ar"]["model"]["name"] == models[ar]
        assert (
            c["tokenizer"]["model"]["name"] == {"B": "tokenizer_base", "L": "tokenizer_large"}[tok]
        )


def test_make_tables_scaling_writes_table5_from_shipped_configs(run_python, tmp_path):
    out = run_python(
        "pipeline_steps/make_tables.py",
        *("--config", "config/imagenet/base.yaml", "--scaling", "--out-dir", tmp_path),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    df = pd.read_csv(tmp_path / "table5.csv")
    ours = df[df.experiment != "(paper)"]
    assert list(ours.row) == list(PAPER["table5"])
    assert list(ours["gFID (paper)"]) == [r["gfid"] for r in PAPER["table5"].values()]
    assert len(df) == len(PAPER["table5"]) + len(PAPER["table5_baselines"])
    assert "best unguided preset" in (tmp_path / "table5.md").read_text()
    assert "{% raw %}" in (tmp_path / "table5.rst").read_text()


def test_tables_name_schedules_from_file_content_not_order(tmp_path):
    files, settings = run_files(tmp_path / "run")
    outputs = {}
    for name, order in (("config_order", lambda x: x), ("shuffled", lambda x: x[1:] + x[:1])):
        out = tmp_path / name / "tables"
        r = step(
            "make_tables.py", *settings, "--out-dir", str(out), *args(files, TABLE_INPUTS, order)
        )
        assert r.returncode == 0, r.stderr[-2000:]
        outputs[name] = {p.name: p.read_text() for p in sorted(out.parent.rglob("*.*"))}
    assert outputs["config_order"] == outputs["shuffled"]
    assert sorted(outputs["shuffled"]) == sorted(
        [f"{t}.{e}" for t in T.TABLES if T.TABLES[t].group == "run" for e in T.TABLE_EXTENSIONS]
        + ["summary.md"]
    )
    t4 = pd.read_csv(tmp_path / "shuffled" / "tables" / "table4.csv").set_index("schedule")
    assert t4.loc["linear", "PSNR (dB)"] == 21.0 and t4.loc["cosine", "rFD (demo features)"] == 3.0
    assert "- **cosine**: val loss 4.500 nats" in outputs["shuffled"]["summary.md"]


def test_tables_refuse_a_missing_schedule_and_an_unnamed_file_writing_nothing(tmp_path):
    files, settings = run_files(tmp_path / "run")
    out = tmp_path / "tables"
    out.mkdir()
    (out / "table2.md").write_text("old")
    files["--position-loss"] = files["--position-loss"][:2]
    r = step("make_tables.py", *settings, "--out-dir", str(out), *args(files, TABLE_INPUTS))
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == (
        "error: no position-loss file for schedule 'cosine' (rule train_ar)"
    )
    old = Path(files["--recon"][0])
    record = json.loads(old.read_text())
    record["rfid"] = record.pop("rfd")  # another version's key
    old.write_text(json.dumps(record))
    r = step("make_tables.py", *settings, "--out-dir", str(out), *args(files, TABLE_INPUTS[:1]))
    assert r.returncode == 1 and r.stderr.splitlines()[-1] == (
        f"error: {old}: no 'rfd' (another version's recon metrics file); "
        "rerun the `eval_recon` rule"
    )
    # all files or none: the failed runs left the old table and wrote nothing else
    assert [p.name for p in tmp_path.iterdir() if p.name != "run"] == ["tables"]
    assert [(p.name, p.read_text()) for p in out.iterdir()] == [("table2.md", "old")]
