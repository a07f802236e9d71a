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
    retries: rule_retries("train_tokenizer")
    params:
        config=config_hash("seed", "data", "tokenizer", per_schedule=True),
    shell:
        "{HEARTBEAT}{LAUNCH[train_tokenizer]} pipeline_steps/train_tokenizer.py {CONF} "
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
    params:
        config=config_hash("seed", "data", "encode", "eval", "tokenizer", per_schedule=True),
    resources:
        **rule_resources("eval_recon"),
    retries: rule_retries("eval_recon")
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
    retries: rule_retries("encode_tokens")
    params:
        config=config_hash("seed", "data", "encode", "tokenizer", per_schedule=True),
    shell:
        "{HEARTBEAT}{LAUNCH[encode_tokens]} pipeline_steps/encode_tokens.py {CONF} --schedule {wildcards.schedule} "
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
    params:
        config=config_hash("entropy", "tokenizer", per_schedule=True),
    resources:
        **rule_resources("measure_entropy"),
    retries: rule_retries("measure_entropy")
    shell:
        "{STEP}/measure_entropy.py {CONF} --schedule {wildcards.schedule} --tokens {input.tokens} "
        "--tokenizer {input.tok} "
        "--out-csv {output.csv} --out-json {output.json} > {log} 2>&1"
