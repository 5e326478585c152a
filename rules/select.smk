# Selection stage: one job per (strategy, budget, seed), then a coverage comparison across them. The
# figures of both are tagged for `snakemake --report` (captions in report/).
# strategy: topi | cci | loss | cluster | topi_strata | topi_resid | random<M>x (a random baseline M times
# the budget) | lenmatch-<strategy> (random with that selection's length histogram, same budget and seed);
# budget: rate<R> (pruning rate R) or n<K> (K sequences). Settings that change one strategy's result
# are params of that strategy's jobs only, so changing cci.beta reruns only cci selections and what
# follows them, and adding a rate or a seed only adds jobs.
import shlex

from bioprune.select.inputs import parse_family_regex

# The influence stage's merged score table (id, self_influence, loss, ...).
SELECT_SCORES = f"{RESULTS}/influence/scores.parquet"
# The family of every pool sequence, computed once for all selections (none without a family regex).
FAMILIES = f"{POOL}/families/families.parquet"
FAMILY_REGEX = shlex.quote(str(config["select"]["family_regex"] or "none"))
HAS_FAMILIES = parse_family_regex(config["select"]["family_regex"]) is not None


rule families:
    input:
        table=f"{filtered_pool_dir()}/sequences.parquet",
    output:
        FAMILIES,
    log:
        f"{LOGS}/select/families.log",
    conda:
        ENV_POOL
    params:
        family=FAMILY_REGEX,
        pool=folder_of("input.table"),
    shell:
        "python -m bioprune families --family-regex {params.family} --out {output:q} {params.pool:q} 2> {log:q}"


rule select:
    input:
        scores=SELECT_SCORES,
        fasta=f"{filtered_pool_dir()}/sequences.fasta.gz",
        table=f"{filtered_pool_dir()}/sequences.parquet",
        families=FAMILIES if HAS_FAMILIES else [],
        # lenmatch-<strategy>: the selection whose length histogram it matches (same budget and seed)
        match=lambda wildcards: matched_ids(SELECT, wildcards),
    output:
        ids=f"{SELECT}/{{strategy}}/{{budget}}/seed{{seed}}/ids.txt",
        fasta=f"{SELECT}/{{strategy}}/{{budget}}/seed{{seed}}/coreset.fasta.gz",
        diagnostics=report(
            f"{SELECT}/{{strategy}}/{{budget}}/seed{{seed}}/diagnostics.png",
            caption="../report/diagnostics.rst",
            category="Selection",
            subcategory="{budget}",
            labels={"strategy": "{strategy}", "seed": "{seed}"},
        ),
        summary=f"{SELECT}/{{strategy}}/{{budget}}/seed{{seed}}/summary.json",
    log:
        f"{LOGS}/select/{{strategy}}_{{budget}}_seed{{seed}}.log",
    conda:
        ENV_TORCH
    params:
        cci=lambda wildcards: (
            f"--beta {config['select']['cci']['beta']} --bins {config['select']['cci']['bins']}"
            if wildcards.strategy == "cci"
            else ""
        ),
        strata=lambda wildcards: length_args(config, SELECT, wildcards),
        family=FAMILY_REGEX,
        families=lambda wildcards, input: (
            f"--families {shlex.quote(input.families)}" if input.families else ""
        ),
        pool=folder_of("input.table"),
        out=folder_of("output.summary"),
    shell:
        "python -m bioprune select --scores {input.scores:q} --pool {params.pool:q}"
        " --strategy {wildcards.strategy} --budget {wildcards.budget} --seed {wildcards.seed}"
        " {params.cci} {params.strata} --family-regex {params.family} {params.families}"
        " --out {params.out:q} 2> {log:q}"


rule select_report:
    input:
        select_targets("summary.json"),
    output:
        table=f"{SELECT}/report/coverage.tsv",
        markdown=f"{SELECT}/report/coverage.md",
        figure=report(
            f"{SELECT}/report/coverage.png",
            caption="../report/coverage.rst",
            category="Selection",
            subcategory="coverage",
            labels={"figure": "coverage across selections"},
        ),
    log:
        f"{LOGS}/select/report.log",
    conda:
        ENV_TORCH
    params:
        dirs=lambda wildcards, input: " ".join(
            shlex.quote(os.path.dirname(p)) for p in input
        ),
        out=folder_of("output.table"),
    shell:
        "python -m bioprune select-report --out {params.out:q} {params.dirs} 2> {log:q}"
