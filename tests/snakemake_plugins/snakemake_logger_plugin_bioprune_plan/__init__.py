"""A Snakemake logger plugin (``--logger bioprune-plan``) for the tests: it writes every job of a run
or dry run as one JSON line (job id, rule, wildcards, output files, shell command, reason) to the file
named by ``BIOPRUNE_PLAN_LOG``, so tests ask Snakemake what it would run through the logger plugin
interface (snakemake-interface-logger-plugins) instead of reading its text output. See
tests/snakemake_plan.py."""

from __future__ import annotations

import json
import os
from logging import LogRecord

from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.common import LogEvent


class LogHandler(LogHandlerBase):
    def __post_init__(self) -> None:
        self.path = os.environ["BIOPRUNE_PLAN_LOG"]
        open(self.path, "w").close()  # a run that plans nothing leaves an empty file

    def emit(self, record: LogRecord) -> None:
        event = getattr(record, "event", None)
        if event == LogEvent.JOB_INFO:
            line = {
                "event": "job",
                "jobid": record.jobid,
                "rule": record.rule_name,
                "wildcards": {k: str(v) for k, v in (record.wildcards or {}).items()},
                "output": [str(f) for f in record.output or ()],
                "shellcmd": record.shellcmd,
                "reason": record.reason,
            }
        elif event == LogEvent.RUN_INFO:
            line = {"event": "stats", "stats": {k: int(v) for k, v in record.stats.items()}}
        else:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(line) + "\n")

    @property
    def writes_to_stream(self) -> bool:
        return False

    @property
    def writes_to_file(self) -> bool:
        return False

    @property
    def has_filter(self) -> bool:
        return True  # every record, whatever --quiet says

    @property
    def has_formatter(self) -> bool:
        return True

    @property
    def needs_rulegraph(self) -> bool:
        return False
