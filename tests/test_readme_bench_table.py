"""The README's benchmark table is the one benchmarks/readme_table.py renders from the committed JSON."""

from __future__ import annotations

import copy

import pytest

from benchmarks.readme_table import (
    END,
    README,
    START,
    load_results,
    readme_section,
    render_table,
    replace_section,
)


def test_readme_table_is_rendered_from_the_committed_results():
    assert readme_section(README.read_text(encoding="utf-8")) == render_table(), (
        "README.md's benchmark table differs from benchmarks/results/*.json: run `make bench-table`")


def test_rewriting_a_current_readme_changes_nothing():
    text = README.read_text(encoding="utf-8")
    assert replace_section(text, render_table()) == text


def test_the_table_follows_the_json():
    results = load_results()
    assert set(results) >= {"bench_analysis", "bench_llm_scale", "bench_phases", "bench_actor", "bench_training"}
    changed = copy.deepcopy(results)
    heldout = next(s for s in changed["bench_phases"]["suites"] if s["name"] == "heldout_v5")
    heldout["accuracy"], heldout["n_matrices"] = 0.9, 541
    final = next(s for s in changed["bench_phases"]["suites"] if s["name"] == "table7_v5")
    v4 = next(s for s in changed["bench_phases_v4_fresh"]["suites"] if s["name"] == "table7_v5")
    v4["accuracy"] = 0.5
    changed["bench_phases"]["real_layers"]["minilm_encoder"]["default"]["random_like"] = 7
    changed["bench_actor"]["batched_speedup"] = 3.04
    changed["bench_analysis"]["machine"]["weightwatcher"] = "9.9"
    table = render_table(changed)
    assert "held-out split (541 matrices," in table and "| 90 % (lowest phase: " in table
    assert "| 50 % vs " + f"{100 * final['accuracy']:.1f}".removesuffix(".0") + " % /" in table
    assert "encoder matrices: 7 random_like" in table
    assert "batched vs one at a time | 3.0× |" in table
    changed["bench_farms"]["acceptance"]["gaussian"]["alpha_hill_farms_spread"] = 0.123
    assert "α_hill FARMS 0.123 vs" in render_table(changed)
    assert table.count("WeightWatcher 9.9") == 2
    assert render_table(results) == render_table()  # the default is the committed JSON


def test_one_row_per_benchmark():
    rows = render_table().splitlines()[2:]
    assert len(rows) == 19 and all(row.startswith("| ") and row.endswith(" |") for row in rows)


@pytest.mark.parametrize("text", ["no markers", f"{START}\n| a |\n", f"{END}\n{START}\n", f"{START}{START}{END}"])
def test_a_readme_without_one_marked_section_is_refused(text):
    with pytest.raises(ValueError, match="bench-table"):
        replace_section(text, "| a |")


def test_only_the_marked_section_is_replaced():
    text = f"before\n{START}\n| old |\n{END}\nafter\n"
    assert replace_section(text, "| new |") == f"before\n{START}\n| new |\n{END}\nafter\n"
    assert readme_section(replace_section(text, "| new |")) == "| new |"
