# Tables 1-2 and Fig. 2(b) / theoretical Fig. 2(a): need only the config.


rule theory:
    output:
        table1=f"{R}/tables/table1_theory.csv",
        table2=f"{R}/tables/table2_schedules.csv",
        fig2b=report(f"{R}/figures/fig2b_schedules.png", category="Schedules"),
        fig2a=report(f"{R}/figures/fig2a_theory.png", category="Schedules"),
    log:
        f"{W}/logs/theory.log",
    resources:
        **rule_resources("theory"),
    shell:
        "({STEP}/make_tables.py {CONF} --theory-only --out-dir {R}/tables && "
        "{STEP}/plot_figures.py {CONF} --theory-only --out-dir {R}/figures) > {log} 2>&1"
