"""Write the registered tables (vcq.report.tables.TABLES) of one group as CSV, Markdown, LaTeX and
report caption, and with the run tables results/<exp>/summary.md: all files or none."""

from pathlib import Path

from vcq import runfiles
from vcq.cli import load_step_config, report_parser, run_step, setup_logging
from vcq.io import StepError, staged_dir
from vcq.metrics.records import (
    EntropySummary,
    GenerationMetrics,
    ProbeMetrics,
    ReconstructionMetrics,
    records_by_name,
)
from vcq.paths import Layout
from vcq.report import schedule_names, with_data_manifest
from vcq.report.tables import (
    INPUTS,
    TableInputs,
    scaling_rows,
    summary,
    table_texts,
    tables_of,
)
from vcq.sampling import sampled_pairs


def run_records(args, cfg: dict) -> dict:
    """The records given on the command line, each file read once, by `TableInputs` field."""
    names, pairs = schedule_names(cfg), sampled_pairs(cfg)
    out: dict = {}
    if args.entropy:
        out["entropy"] = records_by_name(args.entropy, EntropySummary, names)
    if args.recon:
        out["recon"] = records_by_name(args.recon, ReconstructionMetrics, names)
    if args.gen:
        gen: dict[str, list] = {}
        for (name, _), record in records_by_name(args.gen, GenerationMetrics, pairs).items():
            gen.setdefault(name, []).append(record)
        out["gen"] = gen
    if args.probe:
        out["probe"] = records_by_name(args.probe, ProbeMetrics, names)
    if args.position_loss:
        out["position_loss"] = runfiles.frames_by_name(
            args.position_loss, runfiles.read_position_loss, names, "position-loss file", "train_ar"
        )
    return out


def main() -> None:
    parser = report_parser(
        __doc__,
        out_dir="folder for <table>.{csv,md,tex,rst}",
        manifest="the data set's manifest.json (train count: N where report.n_images is null)",
        only_theory="the tables built from the config alone (group theory)",
        **INPUTS,
    )
    parser.add_argument(
        "--out-summary",
        default=None,
        help="summary Markdown (default: beside the --out-dir folder)",
    )
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="only Table 5, from the results of the experiments in report.scaling",
    )
    args = parser.parse_args()
    cfg, log = load_step_config(args), setup_logging()
    from_manifest = cfg["report"]["n_images"] is None
    try:
        cfg, classes = with_data_manifest(cfg, args.manifest)
    except ValueError as e:
        parser.exit(1, f"error: {e}\n")
    group = "theory" if args.only_theory else "scaling" if args.scaling else "run"
    specs = tables_of(group, cfg)
    if group == "scaling" and not specs:
        raise StepError(f"{args.config}: report.scaling lists no rows for Table 5")
    records = run_records(args, cfg) if group == "run" else {}
    if group == "scaling":
        records["scaling"] = scaling_rows(cfg)
    inputs = TableInputs(cfg, classes, from_manifest, **records)
    # every table is built before any file is written: a failure leaves the old files alone
    tables = {s.name: s.build(inputs) for s in specs}
    out = Path(args.out_dir)
    summary_path = Path(args.out_summary) if args.out_summary else Layout.summary_of(out)
    elsewhere = {summary_path.name: summary_path} if group == "run" else {}
    with staged_dir(out, elsewhere) as stage:
        for spec in specs:
            for ext, text in table_texts(tables[spec.name], spec, inputs).items():
                (stage / f"{spec.name}.{ext}").write_text(text)
        if group == "run":
            (stage / summary_path.name).write_text(summary(inputs, tables))
    log.info("%s tables %s written to %s", group, list(tables), out)


if __name__ == "__main__":
    run_step(main)
