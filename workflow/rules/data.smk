# The data set: the embedded synthetic set is generated; an image folder (ImageNet, your own) is
# validated in place (every image decoded once, unreadable ones listed) before anything trains on it.

# The generator writes its manifest into its root; a folder's manifest goes to work/ instead, since
# the folder may be read-only or shared between experiments.
DATA_MANIFEST = PATHS.data_manifest(CFG["data"])


rule make_dataset:
    output:
        DATA_MANIFEST,
    log:
        PATHS.log("make_dataset"),
    retries: rule_retries("make_dataset")
    threads: step_threads("make_dataset")
    resources:
        **rule_resources("make_dataset"),
    params:
        config=config_hash("seed", "data"),
    shell:
        '"$VCQ_PYTHON" pipeline_steps/make_dataset.py --config {RESOLVED_CONFIG:q} --out {output:q} > {log:q} 2>&1'
