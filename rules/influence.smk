# Influence stage: partial diagonal Fisher over the D_sub members of each shard (map), one reduce,
# then the self-influence of every sequence of each shard (one job per shard; a GPU job on clusters
# with influence.gpu), merged into one table that the selection stage reads.
# Settings that change the numbers are params (changing one reruns what depends on it); batch size
# only changes speed, so it sits in the command line and not in params.
INFLUENCE = f"{RESULTS}/influence"
_inf = config["influence"]
INFLUENCE_LOSS = (
    f"--block {_inf['block']} --loss-mode {_inf['loss_mode']} --loss-norm {_inf['loss_norm']}"
    f" --mask-seed {_inf['mask_seed']}"
    f" --mask-prob {_inf['mask_prob']} --max-length {_inf['max_length']}"
    f" --long-sequences {_inf['long_sequences']}"
)
INFLUENCE_SPEED = f"--batch-tokens {_inf['batch_tokens']}"
INFLUENCE_GPU = 1 if _inf["gpu"] else 0


rule fisher:
    input:
        shard=f"{POOL}/shards/shard_{{shard}}.fasta.gz",
        model=rules.reference.output.model,
        ids=rules.reference.output.ids,
    output:
        f"{INFLUENCE}/fisher/partial_{{shard}}.pt",
    log:
        f"{LOGS}/influence/fisher_{{shard}}.log",
    conda:
        ENV_TORCH
    threads: config["threads"]
    resources:
        gpu=INFLUENCE_GPU,
    params:
        loss=INFLUENCE_LOSS,
        precision=_inf["precision"],
    shell:
        "python -m bioprune fisher --model {input.model:q} --ids {input.ids:q} --out {output:q}"
        " {params.loss} --precision {params.precision}"
        f" {INFLUENCE_SPEED} --threads {{threads}} {{input.shard:q}} 2> {{log:q}}"


rule fisher_reduce:
    input:
        expand(f"{INFLUENCE}/fisher/partial_{{shard}}.pt", shard=shard_ids()),
    output:
        f"{INFLUENCE}/fisher.pt",
    log:
        f"{LOGS}/influence/fisher_reduce.log",
    conda:
        ENV_TORCH
    shell:
        "python -m bioprune fisher-reduce --out {output:q} {input:q} 2> {log:q}"


rule score:
    input:
        shard=f"{POOL}/shards/shard_{{shard}}.fasta.gz",
        model=rules.reference.output.model,
        fisher=rules.fisher_reduce.output,
    output:
        scores=f"{INFLUENCE}/scores/shard_{{shard}}.parquet",
        report=f"{INFLUENCE}/scores/shard_{{shard}}_report.json",
    log:
        f"{LOGS}/influence/score_{{shard}}.log",
    conda:
        ENV_TORCH
    threads: config["threads"]
    resources:
        gpu=INFLUENCE_GPU,
    params:
        loss=INFLUENCE_LOSS,
        eps=_inf["eps"],
        precision=_inf["precision"],
    shell:
        "python -m bioprune score --model {input.model:q} --fisher {input.fisher:q}"
        " --out {output.scores:q} --report {output.report:q} {params.loss} --eps {params.eps}"
        " --precision {params.precision}"
        f" {INFLUENCE_SPEED} --threads {{threads}} {{input.shard:q}} 2> {{log:q}}"


# Rows in pool order (the shard table lists it): select then needs no id join, and a seeded random
# selection does not depend on how many shards scored the pool.
rule merge_scores:
    input:
        tables=expand(f"{INFLUENCE}/scores/shard_{{shard}}.parquet", shard=shard_ids()),
        order=f"{POOL}/shards/shards.parquet",
    output:
        scores=f"{INFLUENCE}/scores.parquet",
        report=f"{INFLUENCE}/scores_report.json",
    log:
        f"{LOGS}/influence/merge_scores.log",
    conda:
        ENV_TORCH
    shell:
        "python -m bioprune merge-scores --order {input.order:q} --out {output.scores:q}"
        " --report {output.report:q} {input.tables:q} 2> {log:q}"
