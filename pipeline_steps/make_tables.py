"""Write the paper's Tables 1, 2, 4, 6, 8/9 (and 5 with --scaling) as CSV + Markdown + LaTeX from
the config and metric files, and results/<exp>/summary.md with the key figures of every table."""

from pathlib import Path

import yaml

from vcq import report, runfiles
from vcq.cli import load_step_config, report_parser, run_step, setup_logging
from vcq.config import k_sizes_for, load_config
from vcq.io import atomic_path
from vcq.sampling import guidance_strategy, presets_for, sampled_pairs


def _metrics(paths: list[str], keys: list, what: str, rule: str) -> dict:
    """{schedule (or (schedule, preset name)): metric JSON path}, named by each file's content and
    checked against the config's `keys` (no files given: {})."""
    return {k: p for k, (p, _) in runfiles.metrics_by_name(paths, keys, what, rule).items()}


def _paper(rep: dict) -> dict:
    return yaml.safe_load(Path(rep["paper_numbers"]).read_text())


def main() -> None:
    parser = report_parser(
        __doc__,
        out_dir="folder for table*.{csv,md,tex}",
        manifest="the data set's manifest.json (train count: N where report.n_images is null)",
        only_theory="Table 1 and the theoretical Table 2 from the config alone (no run files)",
        entropy_json="results/{exp}/entropy/<schedule>.json",
        recon="results/{exp}/recon/<schedule>.json",
        gen="results/{exp}/gen/<schedule>/<preset>.json",
        probe="results/{exp}/probe/<schedule>.json",
        position_loss="results/{exp}/ar/<schedule>_position_loss.csv (AR val loss for the summary)",
    )
    parser.add_argument(
        "--summary", default=None, help="summary Markdown (default: <out-dir>/../summary.md)"
    )
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="only Table 5 (table5.*), from the results of the experiments in report.scaling",
    )
    args = parser.parse_args()
    cfg, log = load_step_config(args), setup_logging()
    source = "report.n_images" if cfg["report"]["n_images"] else "the data manifest's train count"
    try:
        cfg, _ = report.with_data_manifest(cfg, args.manifest)
    except ValueError as e:
        parser.exit(1, f"error: {e}\n")
    rep, out = cfg["report"], Path(args.out_dir)
    n_source = f"N = {rep['n_images']:,} training images ({source})"

    if args.scaling:
        if not rep["scaling"]:
            parser.exit(1, f"error: {args.config}: report.scaling lists no rows for Table 5\n")
        t5 = report.table5(
            rep["scaling"], _paper(rep).get("table5") if rep["paper_comparison"] else None
        )
        how = (
            "gFID: best guided preset of the row's config (IS, precision, recall of that preset); "
            "w/o CFG: best unguided preset"
        )
        report.write_table(t5, out / "table5", [*report.footnotes(t5), how])
        log.info("Table 5 written to %s", out)
        return

    if args.only_theory:
        report.write_table(
            report.table1(rep["datasets"], rep["k"], rep["thresholds"]),
            out / "table1",
            notes=report.table1_notes(rep["k"]),
        )
        t2 = report.table2(cfg).drop(columns="t_star_measured")
        report.write_table(t2, out / "table2_theory", [*report.table2_notes(cfg, None), n_source])
        if rep["reference_configs"]:
            ref = report.merge_schedules([load_config(c) for c in rep["reference_configs"]])
            t2r = report.table2(ref)
            t2r = report.add_paper_columns(
                t2r,
                _paper(rep)["table2"],
                {"k_mean": "k_mean", "bpp": "bpp", "t_star_measured": "t_star"},
            )
            t2r = t2r.drop(columns="t_star_measured")  # nothing is measured for a reference config
            paper = _paper(rep)
            report.write_table(
                t2r,
                out / "table2_reference",
                [
                    f"schedules of {', '.join(rep['reference_configs'])}; "
                    "t_star_measured (paper) is the paper's printed t*",
                    *report.table2_notes(
                        ref, None, paper["table2"], paper.get("fig2a_budget_bits")
                    ),
                ],
            )
        log.info("theory tables written to %s", out)
        return
    paper = _paper(rep) if rep["paper_comparison"] else None
    names = report.schedule_names(cfg)
    pairs = sampled_pairs(cfg)
    entropy = _metrics(args.entropy_json, names, "entropy summary", "measure_entropy")
    t2 = report.table2(cfg, entropy)
    notes = report.footnotes(t2) + report.table2_notes(
        cfg,
        cfg["entropy"]["threshold_bits"],
        paper and paper["table2"],
        paper and paper.get("fig2a_budget_bits"),
    )
    notes += [n_source]
    if paper:
        t2 = report.add_paper_columns(
            t2, paper["table2"], {"k_mean": "k_mean", "bpp": "bpp", "t_star_measured": "t_star"}
        )
    report.write_table(t2, out / "table2", notes)
    gen: dict[str, list[str]] = {}
    for (name, _), path in _metrics(args.gen, pairs, "generation metrics file", "eval_fid").items():
        gen.setdefault(name, []).append(path)
    k_sizes = {n: k_sizes_for(cfg, n) for n in names}
    recon = _metrics(args.recon, names, "recon metrics file", "eval_recon")
    t4 = report.table4(names, recon, gen, k_sizes, report.cfg_image_size(cfg))
    configured = {n: {guidance_strategy(p) for p in presets_for(cfg["sampling"], n)} for n in names}
    t89, notes89 = report.table_guidance(names, gen, configured)
    notes4 = report.footnotes(t4) + report.table4_notes(t4)
    if paper:
        keys = {
            report.PSNR: "psnr",
            t4.columns[t4.columns.get_loc(report.PSNR_BASELINE) + 1]: "rfid",
            t4.columns[t4.columns.get_loc("best_preset") - 1]: "gfid",
            t4.columns[t4.columns.get_loc("best_preset") + 1]: "gfid_nocfg",
        }
        t4 = report.add_paper_columns(t4, paper["table4"], keys)
        t89 = report.add_paper_columns(
            t89, paper["table8_9"], {c: c.split(":")[0] for c in t89.columns[1:]}
        )
    report.write_table(t4, out / "table4", notes4)
    t6 = report.table6(_metrics(args.probe, names, "probe file", "linear_probe"))
    report.write_table(
        report.add_probe_paper_columns(t6, paper["table6"]) if paper else t6,
        out / "table6",
        [*report.footnotes(t6), *report.TABLE6_NOTES],
    )
    report.write_table(t89, out / "table8_9", notes89)
    text = report.summary(
        cfg,
        {"table2": t2, "table4": t4, "table6": t6, "table8_9": t89},
        runfiles.frames_by_name(
            args.position_loss,
            runfiles.read_position_loss,
            names,
            "position-loss file",
            "train_ar",
        ),
    )
    text += (
        "\nWhat made each table and figure (the config's hash, the hashes of the files it was "
        "made from, the code version): `provenance.json` beside this file.\n"
    )
    summary = Path(args.summary) if args.summary else out.parent / "summary.md"
    with atomic_path(summary) as tmp:
        tmp.write_text(text)
    log.info("tables written to %s", out)


if __name__ == "__main__":
    run_step(main)
