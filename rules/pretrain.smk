# Coreset pretraining: the same architecture trained from scratch on every selection that
# pretrain.strategies names (one job per strategy, budget and seed), through `bioprune train`'s trainer.
# pretrain.compute same_epochs gives each subset pretrain.epochs epochs (the paper); same_steps gives every
# model at a budget the steps of the pretrain.steps_like selection, so data and compute separate. The
# training seed is train.seed + the selection seed. With pretrain.untrained_baseline the random
# initialisation of each seed is kept as a reference model. Needs select.smk (SELECT).
import shlex

_pre = config["pretrain"]
PRETRAIN_ARGS = PLAN.pretrain


rule pretrain:
    input:
        fasta=f"{SELECT}/{{strategy}}/{{budget}}/seed{{seed}}/coreset.fasta.gz",
        summary=f"{SELECT}/{{strategy}}/{{budget}}/seed{{seed}}/summary.json",
        steps_like=lambda wildcards: (
            [
                f"{SELECT}/{_pre['steps_like']}/{wildcards.budget}/seed{wildcards.seed}/coreset.fasta.gz"
            ]
            if _pre["compute"] == "same_steps"
            else []
        ),
    output:
        model=f"{PRETRAIN}/{{strategy}}/{{budget}}/seed{{seed}}/model.pt",
        report=f"{PRETRAIN}/{{strategy}}/{{budget}}/seed{{seed}}/pretrain_report.json",
    log:
        f"{LOGS}/pretrain/{{strategy}}_{{budget}}_seed{{seed}}.log",
    benchmark:
        f"{LOGS}/pretrain/{{strategy}}_{{budget}}_seed{{seed}}.benchmark.tsv"
    conda:
        ENV_TORCH
    threads: config["threads"]
    resources:
        gpu=TRAIN_GPUS,
    params:
        launcher=PRETRAIN_ARGS["launcher"],
        model=PRETRAIN_ARGS["model"],
        train=PRETRAIN_ARGS["train"],
        compute=PRETRAIN_ARGS["compute"],
        seed=lambda wildcards: model_seed(config, wildcards.seed),
        steps_like=lambda wildcards, input: (
            f"--steps-like {shlex.quote(input.steps_like[0])}"
            if input.steps_like
            else ""
        ),
        out=folder_of("output.report"),
    shell:
        "{params.launcher} -m bioprune pretrain {input.fasta:q} --out {params.out:q} {params.model}"
        " {params.train} --seed {params.seed} {params.compute} {params.steps_like}"
        " --selection-summary {input.summary:q} --strategy {wildcards.strategy}"
        " --budget {wildcards.budget} --selection-seed {wildcards.seed} --threads {threads} 2> {log:q}"


rule pretrain_untrained:
    output:
        model=f"{PRETRAIN}/untrained/none/seed{{seed}}/model.pt",
        report=f"{PRETRAIN}/untrained/none/seed{{seed}}/pretrain_report.json",
    log:
        f"{LOGS}/pretrain/untrained_seed{{seed}}.log",
    conda:
        ENV_TORCH
    params:
        model=PRETRAIN_ARGS["model"],
        seed=lambda wildcards: model_seed(config, wildcards.seed),
        out=folder_of("output.report"),
    shell:
        "python -m bioprune pretrain --untrained --out {params.out:q} {params.model} --seed {params.seed}"
        " --strategy untrained --budget none --selection-seed {wildcards.seed} 2> {log:q}"
