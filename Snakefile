# bioprune: influence-based pruning of pretraining data for biological foundation models.
# One .smk file per stage under rules/; all logic lives in the `bioprune` package and its CLI.


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/pool.smk"


rule all:
    input:
        rules.shard.output.report,
