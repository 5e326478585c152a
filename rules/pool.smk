# Pool stage: ingest (with exact dedup) -> decontaminate -> cluster -> holdout -> shard. Each step reads
# the previous step's pool folder (sequences.fasta.gz + sequences.parquet) and writes its own.
import shlex

from bioprune.pool.cluster import DEFAULT_METHOD as CLUSTER_DEFAULT_METHOD


# ingest validates, filters and removes exact duplicates in one pass (ingest --dedup): the first pool
# folder kept, compressed, with duplicates.tsv and both reports.
rule ingest:
    input:
        config["inputs"],
    output:
        fasta=f"{POOL}/ingest/sequences.fasta.gz",
        table=f"{POOL}/ingest/sequences.parquet",
        duplicates=f"{POOL}/ingest/duplicates.tsv",
        report=f"{POOL}/ingest/ingest_report.json",
        dedup_report=f"{POOL}/ingest/dedup_report.json",
    log:
        f"{LOGS}/ingest.log",
    conda:
        ENV_POOL
    params:
        alphabet=config["alphabet"],
        min_length=config["ingest"]["min_length"],
        max_length=config["ingest"]["max_length"] or 0,
        strict="--strict" if config["ingest"]["strict"] else "",
        out=folder_of("output.report"),
    shell:
        "python -m bioprune ingest --dedup --alphabet {params.alphabet} --min-length {params.min_length}"
        " --max-length {params.max_length} {params.strict} --out {params.out:q} {input:q} 2> {log:q}"


rule decontaminate:
    input:
        fasta=rules.ingest.output.fasta,
        table=rules.ingest.output.table,
        eval_sets=list(eval_sets().values()),
    output:
        fasta=f"{POOL}/decontaminate/sequences.fasta.gz",
        table=f"{POOL}/decontaminate/sequences.parquet",
        removed=f"{POOL}/decontaminate/removed.tsv",
        report=f"{POOL}/decontaminate/decontaminate_report.json",
    log:
        f"{LOGS}/decontaminate.log",
    conda:
        ENV_POOL
    threads: config["threads"]
    params:
        alphabet=config["alphabet"],
        evals=" ".join(
            f"--eval {shlex.quote(f'{name}={path}')}"
            for name, path in eval_sets().items()
        ),
        min_identity=config["decontaminate"]["min_identity"],
        min_coverage=config["decontaminate"]["min_coverage"],
        src=folder_of("input.table"),
        out=folder_of("output.report"),
    shell:
        "python -m bioprune decontaminate --alphabet {params.alphabet} {params.evals}"
        " --min-identity {params.min_identity} --min-coverage {params.min_coverage}"
        " --threads {threads} --out {params.out:q} {params.src:q} 2> {log:q}"


rule cluster:
    input:
        fasta=f"{decontaminated_dir()}/sequences.fasta.gz",
        table=f"{decontaminated_dir()}/sequences.parquet",
    output:
        fasta=f"{POOL}/cluster/sequences.fasta.gz",
        table=f"{POOL}/cluster/sequences.parquet",
        clusters=f"{POOL}/cluster/clusters.tsv",
        report=f"{POOL}/cluster/cluster_report.json",
    log:
        f"{LOGS}/cluster.log",
    conda:
        ENV_POOL
    threads: config["threads"]
    params:
        alphabet=config["alphabet"],
        method=config["cluster"]["method"] or CLUSTER_DEFAULT_METHOD[config["alphabet"]],
        min_identity=config["cluster"]["min_identity"],
        min_coverage=config["cluster"]["min_coverage"],
        keep=config["cluster"]["keep"],
        strand=config["cluster"]["strand"],
        src=folder_of("input.table"),
        out=folder_of("output.report"),
    shell:
        "python -m bioprune cluster --alphabet {params.alphabet} --method {params.method}"
        " --min-identity {params.min_identity} --min-coverage {params.min_coverage}"
        " --keep {params.keep} --strand {params.strand} --threads {threads} --out {params.out:q} {params.src:q} 2> {log:q}"


# Sets aside a seeded fraction of whole families (MMseqs2 clusters for sequences without a family): they
# are neither scored nor selected nor trained on, and are the test set of source heldout_families tasks.
rule holdout:
    input:
        fasta=f"{clustered_dir()}/sequences.fasta.gz",
        table=f"{clustered_dir()}/sequences.parquet",
    output:
        fasta=f"{POOL}/holdout/sequences.fasta.gz",
        table=f"{POOL}/holdout/sequences.parquet",
        heldout=HELDOUT_FAMILIES,
        heldout_table=f"{POOL}/holdout/heldout/sequences.parquet",
        groups=f"{POOL}/holdout/heldout_groups.tsv",
        report=f"{POOL}/holdout/holdout_report.json",
    log:
        f"{LOGS}/holdout.log",
    conda:
        ENV_POOL
    params:
        fraction=config["holdout"]["fraction"],
        seed=config["holdout"]["seed"],
        keep=" ".join(
            f"--keep-family {shlex.quote(str(f))}"
            for f in config["holdout"]["keep_families"]
        ),
        family=shlex.quote(str(config["select"]["family_regex"] or "none")),
        src=folder_of("input.table"),
        out=folder_of("output.report"),
    shell:
        "python -m bioprune holdout --fraction {params.fraction} --seed {params.seed} {params.keep}"
        " --family-regex {params.family} --out {params.out:q} {params.src:q} 2> {log:q}"


rule shard:
    input:
        fasta=f"{filtered_pool_dir()}/sequences.fasta.gz",
        table=f"{filtered_pool_dir()}/sequences.parquet",
    output:
        shards=expand(f"{POOL}/shards/shard_{{shard}}.fasta.gz", shard=shard_ids()),
        table=f"{POOL}/shards/shards.parquet",
        report=f"{POOL}/shards/shard_report.json",
    log:
        f"{LOGS}/shard.log",
    conda:
        ENV_POOL
    params:
        n_shards=config["shard"]["n_shards"],
        src=folder_of("input.table"),
        out=folder_of("output.report"),
    shell:
        "python -m bioprune shard --n-shards {params.n_shards} --out {params.out:q} {params.src:q} 2> {log:q}"
