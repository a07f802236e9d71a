# Table 1, the theoretical Table 2 and Fig. 2 from the config alone (nothing trained yet).


rule theory:
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
    resources:
        **rule_resources("theory"),
    shell:
        "({STEP}/make_tables.py {CONF} --only-theory --out-dir {R}/tables && "
        "{STEP}/plot_figures.py {CONF} --only-theory --out-dir {R}/figures) > {log} 2>&1"
