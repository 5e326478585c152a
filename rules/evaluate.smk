# Downstream evaluation: every pretrained model on every task of evaluate.tasks (one job per model and
# task), frozen-embedding probes by default, and one floor per task (no language model; rule floor).
# Tasks with source unselected_pool read, per budget, a sample of the pool sequences that no selection
# at that budget kept (families the pretraining saw: a measure of family coverage); tasks with source
# heldout_families read the families the holdout step set aside. A task's settings are one JSON params
# value, so editing a task reruns only its jobs and the report. Needs pretrain.smk (PRETRAIN_ARGS).
import shlex

_eval = config["evaluate"]


rule perplexity_set:
    input:
        ids=lambda wildcards: PLAN.evaluation.selection_ids(SELECT, wildcards.budget),
        fasta=f"{filtered_pool_dir()}/sequences.fasta.gz",
    output:
        fasta=f"{EVALUATE}/unselected/{{budget}}/sequences.fasta.gz",
        report=f"{EVALUATE}/unselected/{{budget}}/perplexity_set_report.json",
    log:
        f"{LOGS}/evaluate/unselected_{{budget}}.log",
    conda:
        ENV_TORCH
    params:
        max=_eval["unselected_pool"]["max_sequences"],
        seed=_eval["unselected_pool"]["seed"],
        out=folder_of("output.report"),
    shell:
        "python -m bioprune perplexity-set --pool {input.fasta:q} --out {params.out:q}"
        " --max-sequences {params.max} --seed {params.seed} {input.ids:q} 2> {log:q}"


rule evaluate:
    input:
        model=f"{PRETRAIN}/{{strategy}}/{{budget}}/seed{{seed}}/model.pt",
        data=lambda wildcards: task_inputs(task_of(wildcards)),
        workflow_test=lambda wildcards: {
            "unselected_pool": [
                f"{EVALUATE}/unselected/{wildcards.budget}/sequences.fasta.gz"
            ],
            "heldout_families": [HELDOUT_FAMILIES],
        }.get(task_of(wildcards).source, []),
    output:
        f"{EVALUATE}/{{strategy}}/{{budget}}/seed{{seed}}/{{task}}/metrics.json",
    log:
        f"{LOGS}/evaluate/{{strategy}}_{{budget}}_seed{{seed}}_{{task}}.log",
    wildcard_constraints:
        **MODEL_WILDCARDS,
    conda:
        ENV_TORCH
    threads: config["threads"]
    resources:
        gpu=EVAL_GPUS,
    params:
        task=lambda wildcards: task_json(task_of(wildcards)),
        seed=lambda wildcards: probe_seed(config, wildcards.seed),
        test=lambda wildcards, input: (
            f"--test {shlex.quote(input.workflow_test[0])}"
            if input.workflow_test
            else ""
        ),
        out=lambda wildcards, output: os.path.dirname(output[0]),
    # batch_tokens changes speed only: written into the command, not a params value, so changing it
    # reruns nothing
    shell:
        "python -m bioprune evaluate --model {input.model:q} --task-json {params.task} {params.test}"
        f" --out {{params.out:q}} --seed {{params.seed}} --batch-tokens {_eval['batch_tokens']}"
        " --threads {threads} --strategy {wildcards.strategy} --budget {wildcards.budget}"
        " --model-seed {wildcards.seed} 2> {log:q}"


rule floor:
    input:
        data=lambda wildcards: task_inputs(task_of(wildcards)),
    output:
        f"{EVALUATE}/floors/{{task}}.json",
    log:
        f"{LOGS}/evaluate/floor_{{task}}.log",
    conda:
        ENV_TORCH
    threads: config["threads"]
    resources:
        gpu=EVAL_GPUS,
    params:
        task=lambda wildcards: task_json(task_of(wildcards)),
        seed=_eval["seed"],
        # the run's architecture: the floor drops the records the models cannot take, as evaluate does
        model=PRETRAIN_ARGS["model"],
    shell:
        "python -m bioprune floor --task-json {params.task} --out {output:q} --seed {params.seed}"
        " {params.model} --threads {threads} 2> {log:q}"
