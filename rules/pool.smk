# Pool stage: ingest -> exact dedup -> decontaminate -> cluster -> shard.


rule ingest:
    input:
        config["inputs"],
    output:
        fasta=f"{POOL}/ingest/sequences.fasta.gz",
        table=f"{POOL}/ingest/sequences.parquet",
        report=f"{POOL}/ingest/ingest_report.json",
    params:
        alphabet=config["alphabet"],
        min_length=config["ingest"]["min_length"],
        max_length=config["ingest"]["max_length"] or 0,
        strict="--strict" if config["ingest"]["strict"] else "",
    log:
        f"{LOGS}/ingest.log",
    shell:
        "bioprune ingest --alphabet {params.alphabet} --min-length {params.min_length}"
        " --max-length {params.max_length} {params.strict} --out {POOL}/ingest {input} 2> {log}"


rule dedup:
    input:
        rules.ingest.output.fasta,
        rules.ingest.output.table,
    output:
        fasta=f"{POOL}/dedup/sequences.fasta.gz",
        table=f"{POOL}/dedup/sequences.parquet",
        duplicates=f"{POOL}/dedup/duplicates.tsv",
        report=f"{POOL}/dedup/dedup_report.json",
    log:
        f"{LOGS}/dedup.log",
    shell:
        "bioprune dedup --out {POOL}/dedup {POOL}/ingest 2> {log}"


rule decontaminate:
    input:
        rules.dedup.output.fasta,
        rules.dedup.output.table,
        eval_sets=list(config["decontaminate"]["eval_sets"].values()),
    output:
        fasta=f"{POOL}/decontaminate/sequences.fasta.gz",
        table=f"{POOL}/decontaminate/sequences.parquet",
        removed=f"{POOL}/decontaminate/removed.tsv",
        report=f"{POOL}/decontaminate/decontaminate_report.json",
    params:
        alphabet=config["alphabet"],
        evals=" ".join(f"--eval {k}={v}" for k, v in config["decontaminate"]["eval_sets"].items()),
        min_identity=config["decontaminate"]["min_identity"],
        min_coverage=config["decontaminate"]["min_coverage"],
    threads: config["threads"]
    log:
        f"{LOGS}/decontaminate.log",
    shell:
        "bioprune decontaminate --alphabet {params.alphabet} {params.evals}"
        " --min-identity {params.min_identity} --min-coverage {params.min_coverage}"
        " --threads {threads} --out {POOL}/decontaminate {POOL}/dedup 2> {log}"


rule cluster:
    input:
        f"{decontaminated_dir()}/sequences.fasta.gz",
        f"{decontaminated_dir()}/sequences.parquet",
    output:
        fasta=f"{POOL}/cluster/sequences.fasta.gz",
        table=f"{POOL}/cluster/sequences.parquet",
        clusters=f"{POOL}/cluster/clusters.tsv",
        report=f"{POOL}/cluster/cluster_report.json",
    params:
        alphabet=config["alphabet"],
        method=config["cluster"]["method"],
        min_identity=config["cluster"]["min_identity"],
        min_coverage=config["cluster"]["min_coverage"],
        keep=config["cluster"]["keep"],
        src=decontaminated_dir(),
    threads: config["threads"]
    log:
        f"{LOGS}/cluster.log",
    shell:
        "bioprune cluster --alphabet {params.alphabet} --method {params.method}"
        " --min-identity {params.min_identity} --min-coverage {params.min_coverage} --keep {params.keep}"
        " --threads {threads} --out {POOL}/cluster {params.src} 2> {log}"


rule shard:
    input:
        f"{pool_dir_after_filtering()}/sequences.fasta.gz",
        f"{pool_dir_after_filtering()}/sequences.parquet",
    output:
        shards=expand(f"{POOL}/shards/shard_{{shard}}.fasta.gz", shard=shard_ids()),
        table=f"{POOL}/shards/shards.parquet",
        report=f"{POOL}/shards/shard_report.json",
    params:
        n_shards=config["shard"]["n_shards"],
        src=pool_dir_after_filtering(),
    log:
        f"{LOGS}/shard.log",
    shell:
        "bioprune shard --n-shards {params.n_shards} --out {POOL}/shards {params.src} 2> {log}"


def pool_targets():
    return [rules.shard.output.report]
