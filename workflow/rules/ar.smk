# AR model per schedule, then samples per inference preset (Table 7 presets and the CFG grid).


rule train_ar:
    input:
        train=f"{W}/tokens/{{schedule}}/train.h5",
        val=f"{W}/tokens/{{schedule}}/val.h5",
        tok=f"{W}/tokenizer/{{schedule}}/final.pt",
    output:
        # train_log.jsonl beside final.pt is not an output, so a rerun of a killed job keeps it
        model=f"{W}/ar/{{schedule}}/final.pt",
        position_loss=f"{R}/ar/{{schedule}}_position_loss.csv",
    log:
        f"{W}/logs/train_ar_{{schedule}}.log",
    resources:
        **rule_resources("train_ar"),
    retries: rule_retries("train_ar")
    params:
        config=config_hash("seed", "data", "tokenizer", "ar", per_schedule=True),
    shell:
        "{HEARTBEAT}{LAUNCH[train_ar]} pipeline_steps/train_ar.py {CONF} --schedule {wildcards.schedule} "
        "--tokens {input.train} --val-tokens {input.val} --tokenizer {input.tok} --out {output.model} "
        "--position-loss {output.position_loss} {TERMINAL_PROGRESS} > {log} 2>&1"


rule sample:
    input:
        ar=f"{W}/ar/{{schedule}}/final.pt",
        tok=f"{W}/tokenizer/{{schedule}}/final.pt",
    output:
        f"{W}/samples/{{schedule}}/{{preset}}.npz",
    log:
        f"{W}/logs/sample_{{schedule}}_{{preset}}.log",
    params:
        config=config_hash("seed", "data", "tokenizer", "ar", "sampling_run", per_schedule=True, per_preset=True),
    resources:
        **rule_resources("sample"),
    retries: rule_retries("sample")
    shell:
        "{HEARTBEAT}{STEP}/sample.py {CONF} --schedule {wildcards.schedule} --preset {wildcards.preset} "
        "--ar {input.ar} --tokenizer {input.tok} --out {output} {TERMINAL_PROGRESS} > {log} 2>&1"
