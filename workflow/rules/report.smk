# The paper's tables and figures, from the runs' own metric files.


rule tables:
    input:
        recon=per_schedule(f"{R}/recon/{{schedule}}.json"),
        entropy=per_schedule(f"{R}/entropy/{{schedule}}.json"),
        gen=per_pair(f"{R}/gen/{{schedule}}/{{preset}}.json"),
        probe=per_schedule(f"{R}/probe/{{schedule}}.json"),
        position_loss=per_schedule(f"{R}/ar/{{schedule}}_position_loss.csv"),
        data=dataset_ready(),
    output:
        tables=report(
            expand(f"{R}/tables/{{t}}.{{ext}}", t=TABLES, ext=["md", "csv", "tex"]),
            category="Tables",
        ),
        summary=report(f"{R}/summary.md", category="Tables"),
    log:
        f"{W}/logs/tables.log",
    params:
        manifest=lambda wc, input: f"--manifest {input.data}" if input.data else "",
        config=config_hash(*RESULT_SECTIONS),
    resources:
        **rule_resources("tables"),
    retries: rule_retries("tables")
    shell:
        "{STEP}/make_tables.py {CONF} --out-dir {R}/tables --recon {input.recon} "
        "--entropy-json {input.entropy} --gen {input.gen} --probe {input.probe} "
        "--position-loss {input.position_loss} --summary {output.summary} {params.manifest} > {log} 2>&1"


rule figures:
    input:
        entropy=per_schedule(f"{R}/entropy/{{schedule}}.csv"),
        position_loss=per_schedule(f"{R}/ar/{{schedule}}_position_loss.csv"),
        recon=per_schedule(f"{R}/recon/{{schedule}}.json"),
        recon_images=per_schedule(f"{W}/recon/{{schedule}}.npy"),
        data=dataset_ready(),
        tokenizer=per_schedule(f"{W}/tokenizer/{{schedule}}/final.pt"),
        ar=per_schedule(f"{W}/ar/{{schedule}}/final.pt"),
        samples=per_pair(f"{W}/samples/{{schedule}}/{{preset}}.npz"),
    output:
        curves=report(
            expand(f"{R}/figures/{{f}}.{{ext}}", f=FIGURES, ext=["png", "pdf"]),
            category="Figures",
        ),
        samples=report(per_pair(f"{R}/figures/samples_{{schedule}}_{{preset}}.png"), category="Samples"),
        reconstructions=report(f"{R}/figures/reconstructions.png", category="Figures"),
    log:
        f"{W}/logs/figures.log",
    params:
        config=config_hash(*RESULT_SECTIONS),
        # the metrics logs beside each final.pt (not outputs of their rules, see train_tokenizer)
        tokenizer_log=per_schedule(f"{W}/tokenizer/{{schedule}}/train_log.jsonl"),
        ar_log=per_schedule(f"{W}/ar/{{schedule}}/train_log.jsonl"),
        manifest=lambda wc, input: f"--manifest {input.data}" if input.data else "",
    resources:
        **rule_resources("figures"),
    retries: rule_retries("figures")
    shell:
        "{STEP}/plot_figures.py {CONF} --out-dir {R}/figures --entropy-csv {input.entropy} "
        "--position-loss {input.position_loss} --recon {input.recon} --recon-images {input.recon_images} "
        "--samples {input.samples} "
        "--tokenizer-log {params.tokenizer_log} --ar-log {params.ar_log} {params.manifest} > {log} 2>&1"
