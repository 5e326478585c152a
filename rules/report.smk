# Comparison report of a finished run: tables of every metric by strategy, budget and seed (mean and
# spread over seeds), metric-vs-budget figures with random 1x / 10x (and untrained) references, the
# influence histogram and the compute per model. Its files are tagged for `snakemake --report`
# (captions in report/). Needs select.smk, pretrain.smk and evaluate.smk.
REPORT = f"{RESULTS}/report"


rule report:
    input:
        metrics=evaluate_targets(),
        floors=floor_targets(),
        pretrain=pretrain_targets("pretrain_report.json"),
        scores=SELECT_SCORES,
    output:
        table=report(
            f"{REPORT}/metrics.tsv",
            caption="../report/metrics.rst",
            category="Downstream",
            labels={"table": "every metric (TSV)"},
        ),
        markdown=f"{REPORT}/metrics.md",
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
            for t in EVALUATION_PLAN.tasks
        ],
    log:
        f"{LOGS}/report.log",
    conda:
        ENV_TORCH
    params:
        tasks=" ".join(t.name for t in EVALUATION_PLAN.tasks),
        dpi=config["report"]["dpi"],
        out=folder_of("output.table"),
    shell:
        "python -m bioprune report --out {params.out} --tasks {params.tasks} --dpi {params.dpi}"
        " --scores {input.scores} --metrics {input.metrics} {input.floors} --pretrain {input.pretrain} 2> {log}"
