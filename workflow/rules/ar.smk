# AR model per schedule, then samples per inference preset (Table 7 presets and the CFG grid).


rule train_ar:
    input:
        train=PATHS.tokens(split="train"),
        val=PATHS.tokens(split="val"),
        tok=rules.train_tokenizer.output.model,
    output:
        # train_log.jsonl beside final.pt is not an output, so a rerun of a killed job keeps it
        model=PATHS.ar(),
        position_loss=PATHS.position_loss(),
    retries: rule_retries("train_ar")
    threads: step_threads("train_ar")
    resources:
        **rule_resources("train_ar", log=PATHS.log("train_ar_{schedule}")),
    params:
        # not `log:`, which Snakemake deletes before each job: every attempt and slice appends
        log=PATHS.log("train_ar_{schedule}"),
        config=config_hash("seed", "data", "tokenizer", "ar", per_schedule=True),
    shell:
        "set -- pipeline_steps/train_ar.py "
        "--config {RESOLVED_CONFIG:q} --schedule {wildcards.schedule:q} --tokens {input.train:q} "
        "--val-tokens {input.val:q} --tokenizer {input.tok:q} --out {output.model:q} "
        "--out-position-loss {output.position_loss:q}; "
        'VCQ_PROGRESS_FD=3 eval "$VCQ_LAUNCH_TRAIN_AR" \'"$@"\' 3>&2 >> {params.log:q} 2>&1'


rule sample:
    input:
        ar=rules.train_ar.output.model,
        tok=rules.train_tokenizer.output.model,
    output:
        samples=PATHS.samples(),
    retries: rule_retries("sample")
    threads: step_threads("sample")
    resources:
        **rule_resources("sample", log=PATHS.log("sample_{schedule}_{preset}")),
    params:
        # not `log:`, which Snakemake deletes before each job: every attempt and slice appends
        log=PATHS.log("sample_{schedule}_{preset}"),
        config=config_hash(
            "seed", "data", "tokenizer", "ar", "sampling_run", per_schedule=True, per_preset=True
        ),
    shell:
        'VCQ_PROGRESS_FD=3 "$VCQ_PYTHON" pipeline_steps/sample.py --config {RESOLVED_CONFIG:q} '
        "--schedule {wildcards.schedule:q} --preset {wildcards.preset:q} --ar {input.ar:q} "
        "--tokenizer {input.tok:q} --out {output.samples:q} 3>&2 >> {params.log:q} 2>&1"
