# Comparison report of a finished run: the verdict table (each strategy against random 1x / 10x, paired
# by seed, with 95% intervals and Holm-corrected flags), tables of every metric by strategy, budget and
# seed (mean and spread over seeds), metric-vs-budget figures with random 1x / 10x (and untrained) references, the
# influence histogram and the compute per model. Its files are tagged for `snakemake --report`
# (captions in report/). Needs select.smk, pretrain.smk and evaluate.smk.
REPORT = f"{RESULTS}/report"


rule report:
    input:
        metrics=evaluate_targets(),
        floors=floor_targets(),
        pretrain=pretrain_targets("pretrain_report.json"),
        scores=SELECT_SCORES,
        holdout=(
            [f"{POOL}/holdout/holdout_report.json"]
            if config["holdout"]["enabled"]
            else []
        ),
    output:
        table=report(
            f"{REPORT}/metrics.tsv",
            caption="../report/metrics.rst",
            category="Downstream",
            labels={"table": "every metric (TSV)"},
        ),
        markdown=f"{REPORT}/metrics.md",
        verdict=report(
            f"{REPORT}/verdict.tsv",
            caption="../report/verdict.rst",
            category="Downstream",
            labels={"table": "verdict: strategies against random 1x / 10x (TSV)"},
        ),
        verdict_md=f"{REPORT}/verdict.md",
        long=f"{REPORT}/metrics_long.tsv",
        compute=report(
            f"{REPORT}/compute.tsv",
            caption="../report/compute.rst",
            category="Compute",
            labels={"table": "compute per model (TSV)"},
        ),
        compute_md=f"{REPORT}/compute.md",
        page=report(
            f"{REPORT}/report.md",
            caption="../report/page.rst",
            category="Downstream",
            labels={"table": "report page (Markdown)"},
        ),
        histogram=report(
            f"{REPORT}/influence_histogram.png",
            caption="../report/influence.rst",
            category="Influence",
            labels={"figure": "self-influence histogram"},
        ),
        figures=[
            report(
                f"{REPORT}/figures/{t.name}.png",
                caption="../report/figure.rst",
                category="Downstream",
                subcategory="figures",
                labels={"figure": t.name},
            )
            for t in PLAN.evaluation.tasks
        ],
    log:
        f"{LOGS}/report.log",
    conda:
        ENV_TORCH
    params:
        tasks=" ".join(t.name for t in PLAN.evaluation.tasks),
        dpi=config["report"]["dpi"],
        out=folder_of("output.table"),
        holdout=lambda wildcards, input: (
            f"--holdout {shlex.quote(input.holdout[0])}" if input.holdout else ""
        ),
    shell:
        "python -m bioprune report --out {params.out:q} --tasks {params.tasks} --dpi {params.dpi}"
        " --scores {input.scores:q} {params.holdout} --metrics {input.metrics:q} {input.floors:q}"
        " --floors {input.floors:q} --pretrain {input.pretrain:q} 2> {log:q}"
