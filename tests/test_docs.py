"""The user guide's examples run and print what the page says (doctest on the markdown)."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest
import torch

DOCS = Path(__file__).resolve().parents[1] / "docs"
#: pages whose examples are doctests (real output pasted under each ``>>>`` line)
DOCTEST_PAGES = ("cooperative_sgd.md", "experiments.md", "falsify.md", "local_sgd_pl.md",
                 "memory_sgd.md", "mixing_matrices.md", "one_shot_averaging.md",
                 "own_models.md", "squarm_sgd.md",
                 "topology_design.md", "tutorial.md")
PAGES = [DOCS / name for name in DOCTEST_PAGES]


def test_pages_exist():
    assert all(p.is_file() for p in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_doc_examples(page: Path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the printed figures were produced single-threaded
    try:
        res = doctest.testfile(str(page), module_relative=False, verbose=False,
                               optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    finally:
        torch.set_num_threads(threads)
    assert res.attempted > 0
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples in {page.name} failed"
