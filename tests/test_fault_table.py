"""The README's fault table is generated from tests/fault_table.py, whose rows name real tests."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_table import FAULTS, README, readme_block, render  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_fault_names_tests_that_exist():
    assert FAULTS
    for fault in FAULTS:
        assert fault.tests, fault.injected
        for node in fault.tests:
            file, _, name = node.partition("::")
            assert (ROOT / file).is_file(), node
            assert name in _test_functions(ROOT / file), node


def test_readme_table_is_the_generated_one():
    block = readme_block(README.read_text())
    assert block == render(), "README fault table is stale: run .venv/bin/python tests/fault_table.py --write"
    assert block.count("\n| ") == len(FAULTS) + 2  # header, rule, one row per fault
