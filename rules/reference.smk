# Reference stage: draw D_sub from the filtered pool and build the reference model θ̃ on it
# (fine-tune model.checkpoint one epoch, or train model.size from scratch). The scoring stage reads
# its model.pt and dsub.fasta.gz. Every setting that changes the result is in params, so changing one
# reruns this rule and what follows it. A killed job resumes from its last checkpoint when rerun.
REFERENCE = f"{RESULTS}/reference"
REFERENCE_ARGS = PLAN.reference


rule reference:
    input:
        fasta=f"{filtered_pool_dir()}/sequences.fasta.gz",
        table=f"{filtered_pool_dir()}/sequences.parquet",
        checkpoint=(
            [config["model"]["checkpoint"]] if config["model"]["checkpoint"] else []
        ),
    output:
        model=f"{REFERENCE}/model.pt",
        ids=f"{REFERENCE}/dsub_ids.txt",
        fasta=f"{REFERENCE}/dsub.fasta.gz",
        report=f"{REFERENCE}/reference_report.json",
    log:
        f"{LOGS}/reference.log",
    conda:
        ENV_TORCH
    threads: config["threads"]
    resources:
        gpu=TRAIN_GPUS,
    params:
        launcher=REFERENCE_ARGS["launcher"],
        dsub=REFERENCE_ARGS["dsub"],
        model=REFERENCE_ARGS["model"],
        train=REFERENCE_ARGS["train"],
        pool=folder_of("input.table"),
        out=folder_of("output.report"),
    shell:
        "{params.launcher} -m bioprune reference {params.pool:q} --out {params.out:q} {params.dsub}"
        " {params.model} {params.train} --threads {threads}"
        f" {REFERENCE_ARGS['check']} 2> {{log:q}}"
