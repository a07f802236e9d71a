# Table 1, the theoretical Table 2 and Fig. 2 from the config alone (nothing trained yet), and
# the data manifest's train count where the config leaves report.n_images to the data.


rule theory:
    input:
        # the paper configs of Table 2's reference rows: editing one reruns this rule
        CFG["report"]["reference_configs"],
        data=dataset_ready() if CFG["report"]["n_images"] is None else [],
    output:
        tables=report(
            [PATHS.table(t, ext) for t in THEORY_TABLES for ext in ("md", "csv", "tex")],
            category="Theory",
        ),
        figures=report(
            [PATHS.figure(f, ext) for f in THEORY_FIGURES for ext in ("png", "pdf")],
            category="Theory",
        ),
    log:
        PATHS.log("theory"),
    retries: rule_retries("theory")
    threads: step_threads("make_tables")
    resources:
        **rule_resources("theory"),
    params:
        manifest=manifest_flag,
        config=config_hash("report", "schedules", "tokenizer", "data"),
        tables=lambda wildcards, output: Path(output.tables[0]).parent,
        figures=lambda wildcards, output: Path(output.figures[0]).parent,
    shell:
        '("$VCQ_PYTHON" pipeline_steps/make_tables.py --config {RESOLVED_CONFIG:q} --only-theory '
        "--out-dir {params.tables:q} {params.manifest} && "
        '"$VCQ_PYTHON" pipeline_steps/plot_figures.py --config {RESOLVED_CONFIG:q} --only-theory '
        "--out-dir {params.figures:q} {params.manifest}) > {log:q} 2>&1"
