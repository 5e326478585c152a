import os
import sys

from bioprune.config import validate_config
from bioprune.errors import ConfigError

# Rules call the `bioprune` command: make the one installed beside this Python (a venv's bin) visible
# even when the venv is not activated. Under --sdm conda each job's env comes first on PATH.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

try:
    validate_config(config)
except ConfigError as exc:
    raise WorkflowError(str(exc))

RESULTS = config["results"]
POOL = f"{RESULTS}/pool"
LOGS = "logs"


def pool_dir_after_filtering():
    """The pool folder that shards (and everything after) read: clustered or not."""
    return f"{POOL}/cluster" if config["cluster"]["enabled"] else f"{POOL}/decontaminate"


def decontaminated_dir():
    return f"{POOL}/decontaminate" if config["decontaminate"]["enabled"] else f"{POOL}/dedup"


def shard_ids():
    return [f"{i:03d}" for i in range(config["shard"]["n_shards"])]
