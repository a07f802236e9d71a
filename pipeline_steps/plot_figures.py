"""Plot the registered figures (vcq.report.figures.FIGURES) of one group: Fig. 2 (budget and K_t
per schedule), per-position AR loss, sample grids, reconstructions and training curves, each
titled with the experiment (and schedule and preset where it applies), with its report caption
beside it: all files or none."""

from vcq.cli import load_step_config, report_parser, run_step, setup_logging
from vcq.io import staged_dir
from vcq.report import figures, with_data_manifest


def main() -> None:
    """CLI entry point."""
    parser = report_parser(
        __doc__,
        out_dir="folder for the figures (PNG + PDF)",
        manifest="the data set's manifest.json: class names, and N where report.n_images is null",
        only_theory="only the theory figures (Fig. 2 from the config), no run files",
        **figures.INPUTS,
    )
    args = parser.parse_args()
    cfg, log = load_step_config(args), setup_logging()
    try:
        cfg, classes = with_data_manifest(cfg, args.manifest)
    except ValueError as e:
        parser.exit(1, f"error: {e}\n")
    inputs = figures.FigureInputs(cfg, classes, {k: getattr(args, k) for k in figures.INPUTS})
    written = []
    with staged_dir(args.out_dir) as stage:
        for spec in figures.figures_of("theory" if args.only_theory else "run", cfg):
            files = spec.draw(inputs, stage)
            for png in [p for p in files if p.suffix == ".png"]:
                png.with_suffix(".rst").write_text(figures.caption_rst(spec.caption))
            written += files
    log.info("wrote %s to %s", [p.name for p in written], args.out_dir)


if __name__ == "__main__":
    run_step(main)
