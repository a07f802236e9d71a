# Table 1, the theoretical Table 2 and Fig. 2 from the config alone (nothing trained yet).


rule theory:
    input:
        # the paper configs of Table 2's reference rows: editing one reruns this rule
        CFG["report"]["reference_configs"],
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
        config=config_hash("report", "schedules", "tokenizer", "data"),
    resources:
        **rule_resources("theory"),
    retries: rule_retries("theory")
    shell:
        "({STEP}/make_tables.py {CONF} --only-theory --out-dir {R}/tables && "
        "{STEP}/plot_figures.py {CONF} --only-theory --out-dir {R}/figures) > {log} 2>&1"
