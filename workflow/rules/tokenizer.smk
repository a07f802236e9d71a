# Tokenizer per schedule: train -> reconstruction eval -> encode (train views, val centre) -> entropy.


rule train_tokenizer:
    input:
        dataset_ready(),
        external=external("train_tokenizer"),
    output:
        # only final.pt: Snakemake deletes the outputs of an interrupted job, and the metrics log
        # (train_log.jsonl beside it) must survive so a resumed run continues it from last.pt
        model=PATHS.tokenizer(),
    retries: rule_retries("train_tokenizer")
    threads: step_threads("train_tokenizer")
    resources:
        **rule_resources("train_tokenizer", log=PATHS.log("train_tokenizer_{schedule}")),
    params:
        # not `log:`, which Snakemake deletes before each job: every attempt and slice appends
        log=PATHS.log("train_tokenizer_{schedule}"),
        config=config_hash("seed", "data", "tokenizer", per_schedule=True),
    shell:
        "set -- pipeline_steps/train_tokenizer.py "
        "--config {RESOLVED_CONFIG:q} --schedule {wildcards.schedule:q} --out {output.model:q}; "
        'VCQ_PROGRESS_FD=3 eval "$VCQ_LAUNCH_TRAIN_TOKENIZER" \'"$@"\' 3>&2 >> {params.log:q} 2>&1'


rule eval_recon:
    input:
        tok=rules.train_tokenizer.output.model,
        features=feature_net(),
        external=external("eval_recon"),
    output:
        metrics=PATHS.recon(),
        images=PATHS.recon_images(),
    log:
        PATHS.log("eval_recon_{schedule}"),
    retries: rule_retries("eval_recon")
    threads: step_threads("eval_recon")
    resources:
        **rule_resources("eval_recon"),
    params:
        config=config_hash("seed", "data", "encode", "eval", "tokenizer", per_schedule=True),
        # beside the outputs, for a quick look (not read by any rule)
        grid=PATHS.recon_grid(),
    shell:
        '"$VCQ_PYTHON" pipeline_steps/eval_recon.py --config {RESOLVED_CONFIG:q} '
        "--schedule {wildcards.schedule:q} --tokenizer {input.tok:q} "
        "--out {output.metrics:q} --out-images {output.images:q} --out-grid {params.grid:q} "
        "> {log:q} 2>&1"


rule encode_tokens:
    input:
        tok=rules.train_tokenizer.output.model,
    output:
        tokens=PATHS.tokens(),
    retries: rule_retries("encode_tokens")
    threads: step_threads("encode_tokens")
    resources:
        **rule_resources("encode_tokens", log=PATHS.log("encode_{schedule}_{split}")),
    params:
        # not `log:`, which Snakemake deletes before each job: every attempt and slice appends
        log=PATHS.log("encode_{schedule}_{split}"),
        config=config_hash("seed", "data", "encode", "tokenizer", per_schedule=True),
    shell:
        "set -- pipeline_steps/encode_tokens.py "
        "--config {RESOLVED_CONFIG:q} --schedule {wildcards.schedule:q} --tokenizer {input.tok:q} "
        "--split {wildcards.split:q} --out {output.tokens:q}; "
        'VCQ_PROGRESS_FD=3 eval "$VCQ_LAUNCH_ENCODE_TOKENS" \'"$@"\' 3>&2 >> {params.log:q} 2>&1'


rule measure_entropy:
    input:
        tokens=PATHS.tokens(split="train"),
        tok=rules.train_tokenizer.output.model,
    output:
        csv=PATHS.entropy(ext="csv"),
        json=PATHS.entropy(ext="json"),
    log:
        PATHS.log("entropy_{schedule}"),
    retries: rule_retries("measure_entropy")
    threads: step_threads("measure_entropy")
    resources:
        **rule_resources("measure_entropy"),
    params:
        config=config_hash("entropy", "tokenizer", per_schedule=True),
        # beside the outputs, for a quick look (not read by any rule)
        plot=PATHS.entropy(ext="png"),
    shell:
        '"$VCQ_PYTHON" pipeline_steps/measure_entropy.py --config {RESOLVED_CONFIG:q} '
        "--schedule {wildcards.schedule:q} --tokens {input.tokens:q} --tokenizer {input.tok:q} "
        "--out {output.json:q} --out-csv {output.csv:q} --out-plot {params.plot:q} > {log:q} 2>&1"
