# The paper's tables and figures, from the runs' own metric files.


rule tables:
    input:
        recon=per_schedule(f"{R}/recon/{{schedule}}.json"),
        entropy=per_schedule(f"{R}/entropy/{{schedule}}.json"),
        gen=per_pair(f"{R}/gen/{{schedule}}/{{preset}}.json"),
        probe=per_schedule(f"{R}/probe/{{schedule}}.json"),
    output:
        report(
            expand(f"{R}/tables/{{t}}.{{ext}}", t=TABLES, ext=["md", "csv", "tex"]),
            category="Tables",
        ),
    log:
        f"{W}/logs/tables.log",
    params:
        config=config_hash(*RESULT_SECTIONS),
    resources:
        **rule_resources("tables"),
    retries: rule_retries("tables")
    shell:
        "{STEP}/make_tables.py {CONF} --out-dir {R}/tables --recon {input.recon} "
        "--entropy-json {input.entropy} --gen {input.gen} --probe {input.probe} > {log} 2>&1"


rule figures:
    input:
        entropy=per_schedule(f"{R}/entropy/{{schedule}}.csv"),
        position_loss=per_schedule(f"{R}/ar/{{schedule}}_position_loss.csv"),
        recon=per_schedule(f"{R}/recon/{{schedule}}.json"),
        tokenizer=per_schedule(f"{W}/tokenizer/{{schedule}}/final.pt"),
        ar=per_schedule(f"{W}/ar/{{schedule}}/final.pt"),
        samples=per_pair(f"{W}/samples/{{schedule}}/{{preset}}.npz"),
    output:
        curves=report(
            expand(f"{R}/figures/{{f}}.{{ext}}", f=FIGURES, ext=["png", "pdf"]),
            category="Figures",
        ),
        samples=report(per_pair(f"{R}/figures/samples_{{schedule}}_{{preset}}.png"), category="Samples"),
    log:
        f"{W}/logs/figures.log",
    params:
        config=config_hash(*RESULT_SECTIONS),
        # the metrics logs beside each final.pt (not outputs of their rules, see train_tokenizer)
        tokenizer_log=per_schedule(f"{W}/tokenizer/{{schedule}}/train_log.jsonl"),
        ar_log=per_schedule(f"{W}/ar/{{schedule}}/train_log.jsonl"),
    resources:
        **rule_resources("figures"),
    retries: rule_retries("figures")
    shell:
        "{STEP}/plot_figures.py {CONF} --out-dir {R}/figures --entropy-csv {input.entropy} "
        "--position-loss {input.position_loss} --recon {input.recon} --samples {input.samples} "
        "--tokenizer-log {params.tokenizer_log} --ar-log {params.ar_log} > {log} 2>&1"
