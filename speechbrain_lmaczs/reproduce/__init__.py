"""Reproduce the LMAC-ZS paper in one command and compare with its published numbers.

- :mod:`~speechbrain_lmaczs.reproduce.paper`: the paper's ESC-50 tables and zero-shot accuracies, as data;
- :mod:`~speechbrain_lmaczs.reproduce.compare`: ``paper_comparison.md`` / ``.csv`` and the claims' verdicts;
- :mod:`~speechbrain_lmaczs.reproduce.estimates`: estimated GPU time and disk of each step;
- :mod:`~speechbrain_lmaczs.reproduce.steps`: resumable steps (skipped when done with the same options);
- :mod:`~speechbrain_lmaczs.reproduce.chain`: the chain itself (``recipes/ESC50/interpret/reproduce.py``).
"""

from speechbrain_lmaczs.reproduce.compare import claims, comparison_rows, read_eval_results, write_comparison
from speechbrain_lmaczs.reproduce.paper import PAPER_TABLES

__all__ = ["PAPER_TABLES", "claims", "comparison_rows", "read_eval_results", "write_comparison"]
