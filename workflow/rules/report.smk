# The paper's tables and figures, from the runs' own metric files.


rule tables:
    input:
        recon=per_schedule(rules.eval_recon.output.metrics),
        entropy=per_schedule(rules.measure_entropy.output.json),
        gen=per_pair(rules.eval_fid.output.metrics),
        probe=per_schedule(rules.linear_probe.output.metrics),
        position_loss=per_schedule(rules.train_ar.output.position_loss),
        data=dataset_ready(),
    output:
        tables=report(
            [PATHS.table(t, ext) for t in TABLES for ext in ("md", "csv", "tex")],
            category="Tables",
        ),
        summary=report(PATHS.summary(), category="Tables"),
    log:
        PATHS.log("tables"),
    retries: rule_retries("tables")
    threads: step_threads("make_tables")
    resources:
        **rule_resources("tables"),
    params:
        manifest=manifest_flag,
        config=config_hash(*RESULT_SECTIONS),
        out_dir=lambda wildcards, output: Path(output.tables[0]).parent,
    shell:
        '"$VCQ_PYTHON" pipeline_steps/make_tables.py --config {RESOLVED_CONFIG:q} '
        "--out-dir {params.out_dir:q} --recon {input.recon:q} --entropy-json {input.entropy:q} "
        "--gen {input.gen:q} --probe {input.probe:q} --position-loss {input.position_loss:q} "
        "--summary {output.summary:q} {params.manifest} > {log:q} 2>&1"


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
        curves=report(
            [PATHS.figure(f, ext) for f in FIGURES for ext in ("png", "pdf")],
            category="Figures",
        ),
        samples=report(per_pair(PATHS.sample_grid()), category="Samples"),
        reconstructions=report(PATHS.figure("reconstructions"), category="Figures"),
    log:
        PATHS.log("figures"),
    retries: rule_retries("figures")
    threads: step_threads("plot_figures")
    resources:
        **rule_resources("figures"),
    params:
        config=config_hash(*RESULT_SECTIONS),
        out_dir=lambda wildcards, output: Path(output.curves[0]).parent,
        # the metrics logs beside each final.pt (not outputs of their rules, see train_tokenizer)
        tokenizer_log=per_schedule(PATHS.tokenizer_log()),
        ar_log=per_schedule(PATHS.ar_log()),
        manifest=manifest_flag,
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
