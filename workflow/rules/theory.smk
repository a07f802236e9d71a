# Table 1, the theoretical Table 2 and Fig. 2 from the config alone (nothing trained yet), and
# the data manifest's train count where the config leaves report.n_images to the data.


rule theory:
    input:
        # the paper configs of Table 2's reference rows: editing one reruns this rule
        CFG["report"]["reference_configs"],
        data=dataset_ready() if CFG["report"]["n_images"] is None else [],
    output:
        tables=report(
            expand(f"{R}/tables/{{t}}.{{ext}}", t=THEORY_TABLES, ext=["md", "csv", "tex"]),
            category="Theory",
        ),
        figures=report(
            expand(f"{R}/figures/{{f}}.{{ext}}", f=THEORY_FIGURES, ext=["png", "pdf"]),
            category="Theory",
        ),
    log:
        f"{W}/logs/theory.log",
    params:
        manifest=lambda wc, input: f"--manifest {input.data}" if input.data else "",
        config=config_hash("report", "schedules", "tokenizer", "data"),
    resources:
        **rule_resources("theory"),
    retries: rule_retries("theory")
    shell:
        "({STEP}/make_tables.py {CONF} --only-theory --out-dir {R}/tables {params.manifest} && "
        "{STEP}/plot_figures.py {CONF} --only-theory --out-dir {R}/figures {params.manifest}) > {log} 2>&1"
