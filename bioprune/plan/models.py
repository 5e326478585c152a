"""Command-line pieces of the model rules (reference, pretrain, floor), from a validated config.

Every setting that changes a model's weights is in them, so Snakemake reruns a rule when one changes.
Torch-free: the workflow plans without importing torch.
"""

from __future__ import annotations

import shlex

from bioprune.alphabet import BACKEND_ALPHABET
from bioprune.errors import ConfigError
from bioprune.models.specs import default_backend, resolve_spec
from bioprune.models.train_settings import trainer_options
from bioprune.settings import flag


def checked_backend(config: dict) -> str:
    """The model backend of a validated config (null: by alphabet), refused when it fits another alphabet."""
    backend = config["model"]["backend"] or default_backend(config["alphabet"])
    if BACKEND_ALPHABET[backend] != config["alphabet"]:
        raise ConfigError(
            f"model.backend {backend} is for {BACKEND_ALPHABET[backend]}, not {config['alphabet']}"
        )
    return backend


def scratch_model_args(model: dict, backend: str) -> str:
    """``bioprune train`` options of a from-scratch architecture: backend, named size, shape overrides.

    The shape is checked here (hidden divisible by heads...), so that a bad one stops the workflow at
    start-up rather than when the first model is built."""
    try:
        resolve_spec(backend, model["size"], **model["overrides"])
    except ConfigError as exc:
        shape = f"model.size {model['size']} with model.overrides {model['overrides']}"
        raise ConfigError(f"{shape}: {exc}") from None
    args = f"--backend {backend} --size {model['size']}"
    return args + "".join(f" {flag(k)} {v}" for k, v in sorted(model["overrides"].items()))


def launcher(train: dict) -> str:
    """python, or torchrun with one process per GPU when ``train.processes`` > 1."""
    n = train["processes"]
    return "python" if n == 1 else f"torchrun --standalone --nproc-per-node {n}"


def reference_args(config: dict) -> dict[str, str]:
    """Command-line pieces the workflow's ``reference`` rule passes, from a validated config.

        Every setting that changes the reference model is in them, so Snakemake reruns the rule when one
        changes. Keys: ``launcher`` (python or torchrun), ``dsub``, ``model``, ``train``; and ``check`` (the
    learning check's threshold and action, which change no output and so are not params)."""
    m, t, r = config["model"], config["train"], config["reference"]
    backend = checked_backend(config)
    dsub = f"--dsub-seed {r['seed']} " + (
        f"--dsub-size {r['dsub_size']}" if r["dsub_size"] else f"--dsub-fraction {r['dsub_fraction']}"
    )
    if m["checkpoint"]:
        model = f"--init {shlex.quote(str(m['checkpoint']))} --backend {backend}"
        model += "" if r["finetune"] else " --no-finetune"
        epochs = r["finetune_epochs"]
    else:
        model = scratch_model_args(m, backend)
        epochs = r["scratch_epochs"]
    budget = f"--max-steps {r['max_steps']}" if r["max_steps"] else f"--epochs {epochs}"
    lr = r["lr"] if r["lr"] is not None else t["lr"]
    opts = [budget, *trainer_options(t, lr, seed=True)]
    # the learning check changes no output, only whether the step warns or fails: not a rerun trigger
    check = f"--min-entropy-gain {r['min_entropy_gain']} --unlearned {r['unlearned']}"
    return {"launcher": launcher(t), "dsub": dsub, "model": model, "train": " ".join(opts), "check": check}


def pretrain_args(config: dict) -> dict[str, str]:
    """Command-line pieces of the pretrain rule: launcher, model, train (every setting that changes the
    weights except the seed, which the rule adds per model: ``train.seed + selection seed``), compute."""
    m, t, pre = config["model"], config["train"], config["pretrain"]
    backend = checked_backend(config)
    if m["checkpoint"]:
        model = f"--arch-from {shlex.quote(str(m['checkpoint']))}"
    else:
        model = scratch_model_args(m, backend)
    lr = pre["lr"] if pre["lr"] is not None else t["lr"]
    opts = [f"--epochs {pre['epochs']}", *trainer_options(t, lr, seed=False)]
    return {
        "launcher": launcher(t),
        "model": model,
        "train": " ".join(opts),
        "compute": f"--compute {pre['compute']}",
    }


def model_seed(config: dict, seed: str | int) -> int:
    """Training seed of the model of selection seed ``seed`` (so seeds also vary the initialisation)."""
    return int(config["train"]["seed"]) + int(seed)
