# Table 1, the theoretical Table 2, Table 3 and Fig. 2 from the config alone (nothing trained
# yet), and the data manifest's train count where the config leaves report.n_images to the data.


rule theory:
    input:
        # the paper configs of Table 2's reference rows: editing one reruns this rule
        CFG["report"]["reference_configs"],
        data=dataset_ready() if CFG["report"]["n_images"] is None else [],
    output:
        **table_outputs(THEORY_TABLES, "Theory"),
        **figure_outputs(THEORY_FIGURES),
    log:
        PATHS.log("theory"),
    retries: rule_retries("theory")
    threads: step_threads("make_tables")
    resources:
        **rule_resources("theory"),
    params:
        manifest=manifest_flag,
        # Table 3 counts the tokenizer's and the AR model's parameters
        config=config_hash("report", "schedules", "tokenizer", "ar", "data"),
        tables=folder_of(),
        figures=folder_of("figures"),
    shell:
        '("$VCQ_PYTHON" pipeline_steps/make_tables.py --config {RESOLVED_CONFIG:q} --only-theory '
        "--out-dir {params.tables:q} {params.manifest} && "
        '"$VCQ_PYTHON" pipeline_steps/plot_figures.py --config {RESOLVED_CONFIG:q} --only-theory '
        "--out-dir {params.figures:q} {params.manifest}) > {log:q} 2>&1"
