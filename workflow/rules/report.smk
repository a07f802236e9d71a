# The paper's tables and figures, from the runs' own metric files.


def metric_inputs():
    return {
        "recon": expand(f"{R}/recon/{{schedule}}.json", schedule=SCHEDULES),
        "entropy": expand(f"{R}/entropy/{{schedule}}.csv", schedule=SCHEDULES),
        "gen": expand(f"{R}/gen/{{schedule}}/{{preset}}.json", schedule=SCHEDULES, preset=PRESETS),
        "probe": expand(f"{R}/probe/{{schedule}}.json", schedule=SCHEDULES),
        "position_loss": expand(f"{R}/ar/{{schedule}}_position_loss.csv", schedule=SCHEDULES),
    }


rule tables:
    input:
        unpack(metric_inputs),
        theory=rules.theory.output.table1,
    output:
        touch(f"{R}/tables/.done"),
    log:
        f"{W}/logs/tables.log",
    resources:
        **rule_resources("tables"),
    shell:
        "{STEP}/make_tables.py {CONF} --out-dir {R}/tables --recon {input.recon} "
        "--entropy {input.entropy} --gen {input.gen} --probe {input.probe} > {log} 2>&1"


rule figures:
    input:
        unpack(metric_inputs),
        samples=expand(f"{W}/samples/{{schedule}}/{{preset}}.npz", schedule=SCHEDULES, preset=PRESETS),
        theory=rules.theory.output.fig2b,
    output:
        touch(f"{R}/figures/.done"),
    log:
        f"{W}/logs/figures.log",
    resources:
        **rule_resources("figures"),
    shell:
        "{STEP}/plot_figures.py {CONF} --out-dir {R}/figures --entropy {input.entropy} "
        "--position-loss {input.position_loss} --gen {input.gen} --samples {input.samples} "
        "--logs {W} > {log} 2>&1"
