"""Run a workflow job as if inside its conda environment: only the packages its ``envs/*.yaml`` names.

Python imports ``sitecustomize`` at start-up from PYTHONPATH. When ``$BIOPRUNE_ENVCHECK`` names a plan
(written by ``tests/test_envs.py``) and this process is ``python -m bioprune STEP``, every installed
third-party package outside the closure of STEP's environment is hidden from the import system, as if not
installed. One line per process is appended to the plan's log: the step, its environment and each hidden
import it attempted (caught or not), with the module that attempted it.
"""

import atexit
import json
import os
import sys


def _importer() -> str:
    """The module whose import statement is running (the first frame outside the import machinery)."""
    frame = sys._getframe(2)
    while frame and frame.f_globals.get("__name__", "").startswith(("importlib", "_frozen_importlib")):
        frame = frame.f_back
    return frame.f_globals.get("__name__", "?") if frame else "?"


class _Hiding:
    """Wraps one of sys.meta_path's finders: blocked top-level names are not found (``find_spec`` gives
    None, so ``import`` raises ModuleNotFoundError and ``importlib.util.find_spec`` answers None, as for
    a package that is not installed)."""

    def __init__(self, finder, blocked: set[str], attempted: list):
        self.finder, self.blocked, self.attempted = finder, blocked, attempted

    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in self.blocked:
            attempt = [top, _importer()]
            if attempt not in self.attempted:
                self.attempted.append(attempt)
            return None
        return self.finder.find_spec(name, path, target)

    def __getattr__(self, attr):  # invalidate_caches, find_distributions...
        return getattr(self.finder, attr)


def _install() -> None:
    plan_path = os.environ.get("BIOPRUNE_ENVCHECK")
    argv = getattr(sys, "orig_argv", [])
    if not plan_path or "-m" not in argv:
        return
    i = argv.index("-m")
    if argv[i + 1 : i + 2] != ["bioprune"] or len(argv) < i + 3:
        return
    step = argv[i + 2]
    plan = json.loads(open(plan_path).read())
    env = plan["steps"].get(step)
    if env is None:
        return  # a step no rule runs (the test then reports it as unchecked)
    spec = plan["envs"][env]
    # the environment's own executables (mmseqs from bioconda) come first on PATH, as under conda
    os.environ["PATH"] = os.pathsep.join([*spec["path"], os.environ.get("PATH", "")])
    blocked, attempted = set(spec["blocked"]), []
    sys.meta_path[:] = [_Hiding(f, blocked, attempted) for f in sys.meta_path]

    def _record() -> None:
        line = {"step": step, "env": env, "pid": os.getpid(), "blocked_imports": attempted}
        with open(plan["log"], "a") as fh:  # one short line per process: appends do not interleave
            fh.write(json.dumps(line) + "\n")

    atexit.register(_record)


_install()
