# Download stage: every real data file the config names as '{data_dir}/<set>/<file>' that is missing from
# the data folder is fetched from its canonical URL and checked against the sha256 pinned in the registry
# (config/datasets.yaml, or config data_registry), then derived into the file the workflow reads
# (bioprune/download.py). Files already there are checked at start-up and used as they are.
import re

from bioprune.download import check_present, load_registry

DATA_REGISTRY = config["data_registry"] or os.path.join(
    workflow.basedir, "config", "datasets.yaml"
)
try:
    DATASETS = load_registry(DATA_REGISTRY)
except ConfigError as exc:
    raise WorkflowError(str(exc))

# Hashing the few files a run reads takes about a second: done once, by the process that plans the run.
if workflow.is_main_process:
    _bad = check_present([DATASETS[f] for f in DATA_FILES if f in DATASETS], DATA_DIR)
    if _bad:
        raise WorkflowError("data files that do not verify:\n  " + "\n  ".join(_bad))


rule download:
    output:
        f"{DATA_DIR}/{{path}}",
    log:
        f"{LOGS}/download/{{path}}.log",
    wildcard_constraints:
        path="|".join(re.escape(path) for path in DATASETS),
    localrule: True
    conda:
        ENV_POOL
    params:
        # the pins: a changed URL or checksum makes the file again
        source=lambda wildcards: DATASETS[wildcards.path].pin(),
        registry=DATA_REGISTRY,
        data_dir=lambda wildcards, output: output[0][: -len(wildcards.path)].rstrip(
            "/"
        )
        or "/",
    shell:
        "python -m bioprune download --registry {params.registry:q} --data-dir {params.data_dir:q}"
        " {wildcards.path:q} 2> {log:q}"
