# The data set: the embedded synthetic set is generated; an image folder (ImageNet, your own) is
# validated in place (every image decoded once, unreadable ones listed) before anything trains on it.

# The generator writes its manifest into its root; a folder's manifest goes to work/ instead, since
# the folder may be read-only or shared between experiments.
DATA_MANIFEST = (
    f"{CFG['data']['root']}/manifest.json"
    if CFG["data"]["source"] == "synthetic"
    else f"{CFG['paths']['work_dir']}/manifests/{CFG['data']['root'].strip('/').replace('/', '_')}.json"
)


rule make_dataset:
    output:
        DATA_MANIFEST,
    log:
        f"{W}/logs/make_dataset.log",
    params:
        config=config_hash("seed", "data"),
    resources:
        **rule_resources("make_dataset"),
    retries: rule_retries("make_dataset")
    shell:
        "{STEP}/make_dataset.py {CONF} --out {output} > {log} 2>&1"
