"""The comparison report: every downstream metric by strategy, budget and seed (mean and spread over seeds),
figures of each metric against the budget, the influence histogram and the compute each model used.

- :mod:`bioprune.report.collect`: read ``metrics.json`` / ``pretrain_report.json`` files into tables;
- :mod:`bioprune.report.tables`: the seed summary, the headline table, Markdown rendering;
- :mod:`bioprune.report.figures`: metric-vs-budget figures and the influence histogram;
- :mod:`bioprune.report.report_cli`: ``bioprune report``.
"""
