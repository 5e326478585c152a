"""What the pretrain / evaluate / report rules run: the plan from a config, and the command-line pieces."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from bioprune.config import validate_config
from bioprune.errors import ConfigError
from bioprune.plan.evaluate import evaluation_plan, probe_seed, task_json
from bioprune.plan.models import model_seed, pretrain_args

ROOT = Path(__file__).resolve().parents[1]
SELECT_DIRS = [
    f"{s}/{b}/seed{k}"
    for s in ("topi", "cci", "random1x", "random10x")
    for b in ("rate0.9", "rate0.99")
    for k in (0, 1)
]


def config(**sections):
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["select"]["rates"] = [0.9, 0.99]  # the budgets of SELECT_DIRS
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return validate_config(cfg)


def test_default_plan():
    plan = evaluation_plan(config(), SELECT_DIRS, "res")
    assert len(plan.models) == 16 and plan.untrained == ["untrained/none/seed0", "untrained/none/seed1"]
    names = ["trna_ss", "trna_isotype", "seen_family_perplexity", "heldout_family_perplexity"]
    assert [t.name for t in plan.tasks] == names
    targets = plan.evaluate_targets()
    # every trained model x 4 tasks; untrained skips the unselected-pool perplexity (it has no budget)
    assert len(targets) == 16 * 4 + 2 * 3
    assert "res/evaluate/untrained/none/seed0/trna_ss/metrics.json" in targets
    assert "res/evaluate/untrained/none/seed0/seen_family_perplexity/metrics.json" not in targets
    assert "res/evaluate/untrained/none/seed0/heldout_family_perplexity/metrics.json" in targets
    assert plan.budgets_with_unselected == ["rate0.9", "rate0.99"]
    assert plan.pretrain_targets()[0] == "res/pretrain/topi/rate0.9/seed0/model.pt"
    assert plan.selection_ids("res/select", "rate0.99")[0] == "res/select/topi/rate0.99/seed0/ids.txt"
    assert len(plan.selection_ids("res/select", "rate0.99")) == 8
    # one floor per structure / sequence task, not per model; perplexity has none
    assert plan.floor_targets() == [
        "res/evaluate/floors/trna_ss.json",
        "res/evaluate/floors/trna_isotype.json",
    ]
    assert evaluation_plan(config(evaluate={"floors": False}), SELECT_DIRS, "res").floor_targets() == []


def test_strategy_filter_and_unknown_names():
    plan = evaluation_plan(
        config(pretrain={"strategies": ["topi"], "untrained_baseline": False}), SELECT_DIRS, "r"
    )
    assert {d.split("/")[0] for d in plan.models} == {"topi"} and plan.untrained == []
    # the unselected set still excludes every strategy's selections, not only the pretrained ones
    assert len(plan.selection_ids("r/select", "rate0.9")) == 8
    unconfigured = config(select={"strategies": ["topi", "cci", "random"]}, pretrain={"strategies": ["loss"]})
    with pytest.raises(ConfigError, match=r"pretrain.strategies \['loss'\]"):
        evaluation_plan(unconfigured, SELECT_DIRS, "r")


def test_a_random_multiple_planned_at_no_budget_is_a_note_not_an_error():
    """select.rates [0.5]: random10x would need 5x the pool, so the select stage plans none; the pretrain
    stage trains the rest and names what it skipped (it used to stop the run at start-up)."""
    cfg = config(select={"rates": [0.5]})
    dirs = [
        d.replace("rate0.9/", "rate0.5/") for d in SELECT_DIRS if "rate0.9/" in d and "random10x" not in d
    ]
    plan = evaluation_plan(cfg, dirs, "r")
    assert {d.split("/")[0] for d in plan.models} == {"topi", "cci", "random1x"}
    assert plan.skipped == ["random10x: no selection at any budget (see the select notes above)"]


def test_same_steps_needs_its_reference_selections():
    cfg = config(pretrain={"compute": "same_steps", "steps_like": "random1x", "strategies": None})
    evaluation_plan(cfg, SELECT_DIRS, "r")
    no_random = [d for d in SELECT_DIRS if not d.startswith("random1x")]
    with pytest.raises(ConfigError, match="random1x/rate0.9/seed0 is not in the selection stage"):
        evaluation_plan(cfg, no_random, "r")


def test_tasks_of_another_alphabet_are_skipped():
    cfg = config()
    cfg["alphabet"] = "protein"
    plan = evaluation_plan(cfg, SELECT_DIRS, "r")
    assert [t.name for t in plan.tasks] == ["seen_family_perplexity", "heldout_family_perplexity"]


def test_pretrain_args_and_seed():
    a = pretrain_args(
        config(model={"overrides": {"layers": 2, "hidden": 64}}, pretrain={"lr": 1e-3, "epochs": 10})
    )
    assert a["model"] == "--backend rnafm --size tiny --hidden 64 --layers 2"
    assert a["train"].startswith("--epochs 10 --lr 0.001 ") and "--seed" not in a["train"]
    assert a["compute"] == "--compute same_epochs" and a["launcher"] == "python"
    ckpt = pretrain_args(config(model={"checkpoint": "RNA-FM_pretrained.pth"}))
    assert ckpt["model"] == "--arch-from RNA-FM_pretrained.pth"
    assert model_seed(config(train={"seed": 7}), "1") == 8
    with pytest.raises(ConfigError, match="is for protein"):
        pretrain_args(config(model={"backend": "esmc"}))


def test_task_json_is_one_shell_word_that_round_trips():
    plan = evaluation_plan(config(), SELECT_DIRS, "r")
    spec = plan.task("trna_isotype")
    words = shlex.split(task_json(spec))
    assert len(words) == 1 and json.loads(words[0])["label_regex"] == "^D([A-Z])"


def test_probe_seed_follows_the_model_seed():
    # seeds vary the probe too; models of one seed (an arm and its random 1x) share their probe seed
    assert [probe_seed(config(), s) for s in ("0", "1", "2")] == [0, 1, 2]
    assert probe_seed(config(evaluate={"seed": 10}), "2") == 12


def test_every_selection_label_is_a_strategy_wildcard_of_every_stage():
    """One global {strategy} pattern, built from the strategy registry, serves the select, pretrain and
    evaluate rules; a label it misses would be a selection that can never be pretrained (lenmatch-topi
    and the length-aware Top-I once were). Only model rules widen it to the untrained baseline."""
    import re

    from bioprune.plan import MODEL_WILDCARDS, WILDCARDS
    from bioprune.select.strategies import STRATEGIES, strategy_label

    labels = [strategy_label(s, 1) for s in STRATEGIES if s not in ("random", "lenmatch")]
    labels += ["random1x", "random10x", "lenmatch-topi", "lenmatch-topi_resid", "lenmatch-cci"]
    assert all(re.fullmatch(WILDCARDS["strategy"], label) for label in labels), labels
    for bad in ("random", "untrained", "lenmatch-random1x", "topi/rate0.9"):
        assert not re.fullmatch(WILDCARDS["strategy"], bad), bad
    assert re.fullmatch(MODEL_WILDCARDS["strategy"], "untrained")
    assert re.fullmatch(MODEL_WILDCARDS["budget"], "none") and not re.fullmatch(WILDCARDS["budget"], "none")
    for token in ("rate0.9", "rate1e-05", "n5000"):
        assert re.fullmatch(WILDCARDS["budget"], token), token
    common = (ROOT / "rules" / "common.smk").read_text()
    assert "wildcard_constraints:\n    **WILDCARDS," in common
    assert not any(
        "wildcard_constraints" in (ROOT / "rules" / f"{rule}.smk").read_text()
        for rule in ("select", "pretrain")
    )


@pytest.mark.slow
@pytest.mark.realdata
def test_the_rfam_study_plans_every_arm_with_three_seeds(tmp_path):
    """config/rfam_study.yaml (on rfam_full.yaml) plans every arm x 3 seeds through pretraining and
    evaluation, the floors once per task, and the held-out families."""
    import subprocess
    import sys

    if not (ROOT.parent / "shared" / "data" / "rfam14.2_seed").exists():
        pytest.skip("../shared/data is absent: the Rfam study config reads the real data sets")
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-d", str(ROOT)]
    cmd += ["--configfile", "config/rfam_full.yaml", "config/rfam_study.yaml"]
    # results in a scratch folder: a finished or running study in the checkout would hide its jobs
    cmd += ["--config", f"data_dir={ROOT.parent / 'shared' / 'data'}"]
    cmd += [f"results={tmp_path / 'results_rfam_study'}", f"logs={tmp_path / 'logs'}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    arms = ("topi", "topi_strata", "cci", "random1x", "lenmatch-topi", "random10x")
    for arm in arms:
        for seed in range(3):
            assert f"results_rfam_study/pretrain/{arm}/rate0.99/seed{seed}/model.pt" in out, (arm, seed)
    for task in ("bprna_ss", "bprna_ss_cnn", "nrc"):
        assert f"results_rfam_study/evaluate/floors/{task}.json" in out, task
    assert "results_rfam_study/pool/holdout/holdout_report.json" in out


def test_the_workflow_plans_without_torch(tmp_path):
    """Planning is torch-free (bioprune.plan): a dry run of the default config succeeds with torch made
    unimportable, so the Snakemake driver does not need torch and a dry run does not pay for importing it."""
    import os
    import subprocess
    import sys

    blocker = tmp_path / "torch"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('torch is blocked for this test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(ROOT), "-n", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch" not in proc.stderr.lower(), proc.stderr[-3000:]
    # the blocker works: importing torch under it fails
    check = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert check.returncode != 0 and "blocked" in check.stderr
