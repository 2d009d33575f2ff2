"""MAP@5, open-set label insertion, splits and query plans (hand-written numbers)."""

from __future__ import annotations

from whales_identify.data import ManifestRow
from whales_identify.evaluation.harness import (
    NEW,
    limit_plan,
    map_at_5,
    plan_queries,
    split_of,
    top_k_accuracy,
    with_new_label,
)


def test_map_at_5_kaggle_definition():
    ranked = [["a", "b", "c"], ["x", "a", "y"], ["q", "r", "s", "t", "a"], ["q", "r", "s", "t", "u", "a"]]
    truth = ["a", "a", "a", "a"]
    assert abs(map_at_5(ranked, truth) - (1 + 1 / 2 + 1 / 5 + 0) / 4) < 1e-12
    # only the first correct answer counts
    assert map_at_5([["a", "a"]], ["a"]) == 1.0
    assert map_at_5([], []) == 0.0


def test_top_k():
    ranked = [["a", "b"], ["b", "a"], ["c", "d"]]
    assert top_k_accuracy(ranked, ["a", "a", "a"], 1) == 1 / 3
    assert top_k_accuracy(ranked, ["a", "a", "a"], 5) == 2 / 3


def test_new_label_goes_before_the_first_low_score():
    assert with_new_label(["a", "b", "c"], [0.9, 0.4, 0.1], 0.5) == ["a", NEW, "b", "c"]
    assert with_new_label(["a", "b"], [0.2, 0.1], 0.5) == [NEW, "a", "b"]
    assert with_new_label(["a"], [0.9], 0.5) == ["a", NEW]
    assert map_at_5([with_new_label(["a", "b"], [0.2, 0.1], 0.5)], [NEW]) == 1.0


def _row(name: str, ind: str, source: str = "src") -> ManifestRow:
    return ManifestRow(relpath=f"positives/{source}/{name}.jpg", label="cetacean", individual_id=ind,
                       species="sp")


def test_plan_queries_leave_one_out_and_open_set():
    rows = [_row("1", "a"), _row("2", "a"), _row("3", "b")]
    plan = plan_queries(rows)
    assert [(i, m) for i, m in plan if m == "known"] == [(0, "known"), (1, "known")]
    assert [(i, m) for i, m in plan if m == "new"] == [(0, "new"), (2, "new")]
    limited = limit_plan(plan, rows, 1)
    groups = {(rows[i].source, m, split_of(rows[i])) for i, m in plan}
    assert len(limited) == len(groups)  # one query per (source, mode, split)
    assert set(limited) <= set(plan)


def test_split_is_by_individual():
    rows = [_row(str(i), f"ind{i // 3}") for i in range(300)]
    splits: dict[str, set[str]] = {}
    for r in rows:
        splits.setdefault(r.individual_id, set()).add(split_of(r))
    assert all(len(s) == 1 for s in splits.values())
    fraction = sum(s == {"calibration"} for s in splits.values()) / len(splits)
    assert 0.15 < fraction < 0.45
