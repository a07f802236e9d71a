# Table 1, the theoretical Table 2 and Fig. 2 from the config alone (nothing trained yet).


rule theory:
    input:
        # the paper configs of Table 2's reference rows: editing one reruns this rule
        CFG["report"]["reference_configs"],
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
    params:
        resolved=RESOLVED_CONFIG,
        config=config_hash("report", "schedules", "tokenizer", "data"),
        tables=lambda wildcards, output: Path(output.tables[0]).parent,
        figures=lambda wildcards, output: Path(output.figures[0]).parent,
    resources:
        **rule_resources("theory"),
    retries: rule_retries("theory")
    conda:
        "../../environment.yml"
    shell:
        '("$VCQ_PYTHON" pipeline_steps/make_tables.py --config {params.resolved} --only-theory '
        "--out-dir {params.tables} && "
        '"$VCQ_PYTHON" pipeline_steps/plot_figures.py --config {params.resolved} --only-theory '
        "--out-dir {params.figures}) > {log} 2>&1"
