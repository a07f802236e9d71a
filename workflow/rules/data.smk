# The embedded synthetic data set (ImageNet and other folders are used in place, not generated).


rule make_dataset:
    output:
        f"{CFG['data']['root']}/manifest.json",
    log:
        f"{W}/logs/make_dataset.log",
    params:
        config=config_hash("seed", "data"),
    resources:
        **rule_resources("make_dataset"),
    retries: rule_retries("make_dataset")
    shell:
        "{STEP}/make_dataset.py {CONF} > {log} 2>&1"
