# Generation metrics per (schedule, preset), the demo feature network, and the linear probe.


if DEMO_FEATURES:

    rule train_feature_net:
        input:
            dataset_ready(),
        output:
            feature_net(),
        log:
            f"{W}/logs/train_feature_net.log",
        params:
            config=config_hash("seed", "data", "eval"),
        resources:
            **rule_resources("train_feature_net"),
        retries: rule_retries("train_feature_net")
        shell:
            "{STEP}/train_feature_net.py {CONF} --out {output} > {log} 2>&1"


rule eval_fid:
    input:
        samples=f"{W}/samples/{{schedule}}/{{preset}}.npz",
        features=feature_net(),
        data=dataset_ready(),
    output:
        f"{R}/gen/{{schedule}}/{{preset}}.json",
    log:
        f"{W}/logs/eval_fid_{{schedule}}_{{preset}}.log",
    params:
        config=config_hash("seed", "data", "eval", "sampling_run", per_schedule=True, per_preset=True),
    resources:
        **rule_resources("eval_fid"),
    retries: rule_retries("eval_fid")
    shell:
        "{STEP}/eval_fid.py {CONF} --samples {input.samples} --schedule {wildcards.schedule} "
        "--preset {wildcards.preset} --out {output} > {log} 2>&1"


rule linear_probe:
    input:
        tok=f"{W}/tokenizer/{{schedule}}/final.pt",
        train=f"{W}/tokens/{{schedule}}/train.h5",
        val=f"{W}/tokens/{{schedule}}/val.h5",
        ar=prologue_ar(),
    output:
        f"{R}/probe/{{schedule}}.json",
    log:
        f"{W}/logs/probe_{{schedule}}.log",
    params:
        config=config_hash("seed", "data", "tokenizer", "ar", "probe", per_schedule=True),
        ar=lambda wc, input: f"--ar {input.ar}" if input.ar else "",
    resources:
        **rule_resources("linear_probe"),
    retries: rule_retries("linear_probe")
    shell:
        "{STEP}/linear_probe.py {CONF} --tokenizer {input.tok} --train-tokens {input.train} "
        "--val-tokens {input.val} {params.ar} --out {output} > {log} 2>&1"
