# bioprune: influence-based pruning of pretraining data for biological foundation models.
# One .smk file per stage under rules/; all logic lives in the `bioprune` package and its CLI.
import os


# The defaults travel with the workflow; --configfile adds to or overrides them.
configfile: os.path.join(workflow.basedir, "config", "config.yaml")


include: "rules/common.smk"
include: "rules/download.smk"
include: "rules/pool.smk"
include: "rules/reference.smk"
include: "rules/influence.smk"
include: "rules/select.smk"
include: "rules/pretrain.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    input:
        rules.shard.output.report,
        rules.reference.output.model,
        rules.reference.output.report,
        rules.merge_scores.output.scores,
        rules.merge_scores.output.report,
        rules.select_report.output.table,
        rules.report.output.page,


onstart:
    # Only the SLURM submitter (not the per-job "slurm-jobstep" executor) needs an account.
    if workflow.executor_plugin.name.endswith("slurm"):
        problem = slurm_account_problem(
            workflow.resource_settings.default_resources,
            workflow.resource_settings.overwrite_resources,
            getattr(workflow.executor_settings, "no_account", False),
        )
        if problem:
            raise WorkflowError(problem)
