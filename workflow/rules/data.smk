# The data set: the embedded synthetic set is generated; an image folder (ImageNet, your own) is
# validated in place (every image decoded once, unreadable ones listed) before anything trains on it.

# Each experiment has its own copy of the manifest (two experiments on one root never lock or
# write one output file), made from the manifest that the data source shares: a folder is
# validated, a synthetic set generated, once per source key (vcq.data.source), not per experiment.
DATA_MANIFEST = PATHS.data_manifest()


@functools.cache
def data_source_key():
    """The data source's key (a param of make_dataset: a changed folder listing reruns it and
    everything after it); listed once per Snakemake process and only when make_dataset is planned.
    """
    return source_key(CFG["data"])


rule make_dataset:
    input:
        external=external("make_dataset"),
    output:
        DATA_MANIFEST,
    log:
        PATHS.log("make_dataset"),
    retries: rule_retries("make_dataset")
    threads: step_threads("make_dataset")
    resources:
        **rule_resources("make_dataset"),
    params:
        source=lambda wildcards: data_source_key(),
    shell:
        '"$VCQ_PYTHON" pipeline_steps/make_dataset.py --config {RESOLVED_CONFIG:q} --out {output:q} > {log:q} 2>&1'
