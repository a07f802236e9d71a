# Tokenizer per schedule: train -> reconstruction eval -> encode (train views, val centre) -> entropy.


rule train_tokenizer:
    input:
        dataset_ready(),
    output:
        # only final.pt: Snakemake deletes the outputs of an interrupted job, and the metrics log
        # (train_log.jsonl beside it) must survive so a resumed run continues it from last.pt
        model=f"{W}/tokenizer/{{schedule}}/final.pt",
    log:
        f"{W}/logs/train_tokenizer_{{schedule}}.log",
    resources:
        **rule_resources("train_tokenizer"),
    params:
        launch=launcher("train_tokenizer"),
    shell:
        "{HEARTBEAT}{params.launch} pipeline_steps/train_tokenizer.py {CONF} "
        "--schedule {wildcards.schedule} --out {output.model} {TERMINAL_PROGRESS} > {log} 2>&1"


rule eval_recon:
    input:
        tok=f"{W}/tokenizer/{{schedule}}/final.pt",
        features=feature_net(),
    output:
        metrics=f"{R}/recon/{{schedule}}.json",
        recon=f"{W}/recon/{{schedule}}.npy",
    log:
        f"{W}/logs/eval_recon_{{schedule}}.log",
    resources:
        **rule_resources("eval_recon"),
    shell:
        "{STEP}/eval_recon.py {CONF} --schedule {wildcards.schedule} --tokenizer {input.tok} "
        "--out {output.metrics} --npz {output.recon} > {log} 2>&1"


rule encode_tokens:
    input:
        f"{W}/tokenizer/{{schedule}}/final.pt",
    output:
        f"{W}/tokens/{{schedule}}/{{split}}.h5",
    log:
        f"{W}/logs/encode_{{schedule}}_{{split}}.log",
    resources:
        **rule_resources("encode_tokens"),
    params:
        launch=launcher("encode_tokens"),
    shell:
        "{HEARTBEAT}{params.launch} pipeline_steps/encode_tokens.py {CONF} --schedule {wildcards.schedule} "
        "--tokenizer {input} --split {wildcards.split} --out {output} {TERMINAL_PROGRESS} > {log} 2>&1"


rule measure_entropy:
    input:
        tokens=f"{W}/tokens/{{schedule}}/train.h5",
        tok=f"{W}/tokenizer/{{schedule}}/final.pt",
    output:
        csv=f"{R}/entropy/{{schedule}}.csv",
        json=f"{R}/entropy/{{schedule}}.json",
    log:
        f"{W}/logs/entropy_{{schedule}}.log",
    resources:
        **rule_resources("measure_entropy"),
    shell:
        "{STEP}/measure_entropy.py {CONF} --schedule {wildcards.schedule} --tokens {input.tokens} "
        "--tokenizer {input.tok} "
        "--out-csv {output.csv} --out-json {output.json} > {log} 2>&1"
