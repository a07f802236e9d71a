# The paper's tables and figures, from the runs' own metric files. The tables and the records
# they read follow the registry vcq.report.tables.TABLES (docs/EXTENDING.md, "Add a table").

# each record kind a run table may read (vcq.report.tables.INPUTS), as the rule that writes it
RUN_INPUTS = {
    "entropy": per_schedule(rules.measure_entropy.output.json),
    "recon": per_schedule(rules.eval_recon.output.metrics),
    "gen": per_pair(rules.eval_fid.output.metrics),
    "probe": per_schedule(rules.linear_probe.output.metrics),
    "position_loss": per_schedule(rules.train_ar.output.position_loss),
}
TABLE_INPUTS = inputs_of("run", CFG)


rule tables:
    input:
        **{k: RUN_INPUTS[k] for k in TABLE_INPUTS},
        data=dataset_ready(),
    output:
        **table_outputs(TABLES, "Tables"),
        summary=report(PATHS.summary(), caption="../report/summary.rst", category="Tables"),
    log:
        PATHS.log("tables"),
    retries: rule_retries("tables")
    threads: step_threads("make_tables")
    resources:
        **rule_resources("tables"),
    params:
        manifest=manifest_flag,
        config=config_hash(*RESULT_SECTIONS),
        records=report_flags(TABLE_INPUTS),
        out_dir=folder_of(),
    shell:
        '"$VCQ_PYTHON" pipeline_steps/make_tables.py --config {RESOLVED_CONFIG:q} '
        "--out-dir {params.out_dir:q} {params.records} "
        "--out-summary {output.summary:q} {params.manifest} > {log:q} 2>&1"


rule figures:
    input:
        entropy=per_schedule(rules.measure_entropy.output.csv),
        position_loss=per_schedule(rules.train_ar.output.position_loss),
        recon=per_schedule(rules.eval_recon.output.metrics),
        recon_images=per_schedule(rules.eval_recon.output.images),
        data=dataset_ready(),
        tokenizer=per_schedule(rules.train_tokenizer.output.model),
        ar=per_schedule(rules.train_ar.output.model),
        samples=per_pair(rules.sample.output.samples),
    output:
        # the registered figures (vcq.report.figures.FIGURES, docs/EXTENDING.md "Add a figure")
        **figure_outputs(FIGURES),
    log:
        PATHS.log("figures"),
    retries: rule_retries("figures")
    threads: step_threads("plot_figures")
    resources:
        **rule_resources("figures"),
    params:
        config=config_hash(*RESULT_SECTIONS),
        # the metrics logs beside each final.pt (not outputs of their rules, see train_tokenizer)
        tokenizer_log=per_schedule(PATHS.tokenizer_log()),
        ar_log=per_schedule(PATHS.ar_log()),
        manifest=manifest_flag,
        out_dir=folder_of("figures"),
    shell:
        '"$VCQ_PYTHON" pipeline_steps/plot_figures.py --config {RESOLVED_CONFIG:q} '
        "--out-dir {params.out_dir:q} --entropy-csv {input.entropy:q} "
        "--position-loss {input.position_loss:q} --recon {input.recon:q} "
        "--recon-images {input.recon_images:q} --samples {input.samples:q} "
        "--tokenizer-log {params.tokenizer_log:q} --ar-log {params.ar_log:q} {params.manifest} "
        "> {log:q} 2>&1"


def report_products():
    """The rules that write tables and figures: each one's outputs and the files it reads."""
    return [
        {
            "rule": name,
            "outputs": [str(f) for f in getattr(rules, name).output],
            "inputs": sorted({str(f) for f in getattr(rules, name).input}),
        }
        for name in ("theory", "tables", "figures")
    ]


# results/<exp>/provenance.json: per table and figure, the config snapshot's hash, the hashes of
# the files its rule read and the code version (vcq.provenance); summary.md names it.
rule provenance:
    input:
        [out for p in report_products() for out in p["outputs"]],
    output:
        PATHS.provenance(),
    log:
        PATHS.log("provenance"),
    retries: rule_retries("provenance")
    threads: step_threads("write_provenance")
    resources:
        **rule_resources("provenance"),
    params:
        products=lambda wildcards: json.dumps(report_products()),
    shell:
        '"$VCQ_PYTHON" pipeline_steps/write_provenance.py --config {RESOLVED_CONFIG:q} '
        "--products {params.products:q} --out {output:q} > {log:q} 2>&1"


if SCALING_TABLES:

    # Table 5 (report.scaling): a target over the scaling configs, not part of `all`. Each row's
    # files are written by that row's own run (snakemake --configfile <row config>); a row not yet
    # run is listed as a missing input. make_tables.py --scaling writes the table from whatever
    # rows exist, with empty cells for the others.
    rule table5:
        input:
            scaling_inputs(),
            CFG["report"]["paper_numbers"],
        output:
            **table_outputs(SCALING_TABLES, "Scaling"),
        log:
            PATHS.log("table5"),
        retries: rule_retries("table5")
        threads: step_threads("make_tables")
        resources:
            **rule_resources("table5"),
        params:
            config=config_hash("report"),
            out_dir=folder_of(),
        shell:
            '"$VCQ_PYTHON" pipeline_steps/make_tables.py --config {RESOLVED_CONFIG:q} --scaling '
            "--out-dir {params.out_dir:q} > {log:q} 2>&1"
