# Generation metrics per (schedule, preset), the demo feature network, and the linear probe.


if DEMO_FEATURES:

    rule train_feature_net:
        input:
            dataset_ready(),
        output:
            feature_net(),
        log:
            PATHS.log("train_feature_net"),
        retries: rule_retries("train_feature_net")
        threads: step_threads("train_feature_net")
        resources:
            **rule_resources("train_feature_net"),
        params:
            config=config_hash("seed", "data", "eval"),
        shell:
            '"$VCQ_PYTHON" pipeline_steps/train_feature_net.py --config {RESOLVED_CONFIG:q} '
            "--out {output:q} > {log:q} 2>&1"


rule eval_fid:
    input:
        samples=rules.sample.output.samples,
        features=feature_net(),
        data=dataset_ready(),
        external=external("eval_fid"),
    output:
        metrics=PATHS.gen(),
    log:
        PATHS.log("eval_fid_{schedule}_{preset}"),
    retries: rule_retries("eval_fid")
    threads: step_threads("eval_fid")
    resources:
        **rule_resources("eval_fid"),
    params:
        config=config_hash(
            "seed", "data", "eval", "sampling_run", per_schedule=True, per_preset=True
        ),
    shell:
        '"$VCQ_PYTHON" pipeline_steps/eval_fid.py --config {RESOLVED_CONFIG:q} '
        "--samples {input.samples:q} --schedule {wildcards.schedule:q} "
        "--preset {wildcards.preset:q} --out {output.metrics:q} > {log:q} 2>&1"


rule linear_probe:
    input:
        tok=rules.train_tokenizer.output.model,
        train=PATHS.tokens(split="train"),
        val=PATHS.tokens(split="val"),
        ar=prologue_ar(),
    output:
        metrics=PATHS.probe(),
    retries: rule_retries("linear_probe")
    threads: step_threads("linear_probe")
    resources:
        **rule_resources("linear_probe", log=PATHS.log("probe_{schedule}")),
    params:
        # not `log:`, which Snakemake deletes before each job: every attempt and slice appends
        log=PATHS.log("probe_{schedule}"),
        config=config_hash("seed", "data", "tokenizer", "ar", "probe", per_schedule=True),
        ar=lambda wc, input: shlex.join(["--ar", *input.ar]) if input.ar else "",
    shell:
        '"$VCQ_PYTHON" pipeline_steps/linear_probe.py --config {RESOLVED_CONFIG:q} '
        "--schedule {wildcards.schedule:q} --tokenizer {input.tok:q} --train-tokens {input.train:q} "
        "--val-tokens {input.val:q} {params.ar} --out {output.metrics:q} >> {params.log:q} 2>&1"


# Not part of `all`: at paper scale each export is another 9.8 GB. `snakemake adm_samples` writes
# one per sampled pair; `snakemake results/<exp>/adm/<schedule>/<preset>.npz` just one.
rule export_adm:
    input:
        samples=rules.sample.output.samples,
    output:
        adm=PATHS.adm_samples(),
    log:
        PATHS.log("export_adm_{schedule}_{preset}"),
    retries: rule_retries("export_adm")
    threads: step_threads("export_adm")
    resources:
        **rule_resources("export_adm"),
    shell:
        '"$VCQ_PYTHON" pipeline_steps/export_adm.py --config {RESOLVED_CONFIG:q} '
        "--samples {input.samples:q} --out {output.adm:q} > {log:q} 2>&1"


rule adm_samples:
    input:
        per_pair(rules.export_adm.output.adm),
