"""proofs: obligations that re-derive or check each formula the toolkit uses.

Run ``python -m proofs`` for a table (exit code 1 if any obligation fails), or from Python::

    >>> from proofs import run_all, format_table
    >>> print(format_table(run_all(topics=["memory"])))  # doctest: +SKIP

Topics: cooperative, spectra, schedules, local_pl, memory, compressors, squarm, predict (one
module each). Every obligation names the code it protects and imports it, so changing that code's
formula fails the obligation. This package imports ``empirics`` (torch) only inside the
compressor, squarm and predict obligations.
"""

from proofs.core import (
    REGISTRY,
    TOPICS,
    Obligation,
    ObligationFailed,
    Outcome,
    ProofStatus,
    Result,
    checked,
    failed,
    format_table,
    load_all,
    obligation,
    proved,
    require,
    run_all,
)

__all__ = [
    "REGISTRY", "TOPICS", "Obligation", "ObligationFailed", "Outcome", "ProofStatus", "Result",
    "checked", "failed", "format_table", "load_all", "obligation", "proved", "require", "run_all",
]
