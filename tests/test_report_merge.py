"""Bounded-memory merging of a partitioned run's accounting (issue 14): pipelines/report_merge.py
and the bucketed duplicate-id search of pipelines/partitions.cross_duplicates.

* MergedReport writes the same report.json, byte for byte, as the in-memory merge
  (_in_memory_merge below, the clients' merge before MergedReport, + Accounting.write), and the
  same counts and text;
* its checks fail as Accounting.finalize does (a row written twice, a row unaccounted);
* write_layers_json (the vegetation run's {"layers": [...]}) writes what json.dumps of the
  in-memory reports writes, the merged issues streamed; note() adds a note as Accounting.note;
* cross_duplicates finds the same rows with many on-disk buckets as a brute-force search.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.delivery import Accounting
from core.delivery.accounting import AccountingError
from pipelines import partitions as pt
from pipelines.report_merge import MergedReport, issue_from_json, write_layers_json


def _in_memory_merge(layer: str, src: str, n_input: int, folders: list[Path]) -> Accounting:
    """One Accounting holding every id and issue of the tasks' report.json and written.npy."""
    acc = Accounting(layer=layer, source=src, ids=np.full(n_input, None, dtype=object))
    notes: dict[str, None] = {}
    for folder in folders:
        data = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        notes.update(dict.fromkeys(data["notes"]))
        for d in data["rejected"]:
            acc.rejected[d["row"]] = issue_from_json(d)
            acc.ids[d["row"]] = d["id"]
        for issues in data["repaired"]:
            row = issues[0]["row"]
            acc.repaired[row] = [issue_from_json(d) for d in issues]
            acc.ids[row] = issues[0]["id"]
        acc.mark_written(np.load(folder / "written.npy"))
    acc.notes = list(notes)
    return acc


def _issue(row: int, code: str, msg: str) -> dict:
    return {"row": row, "id": f"B{row:04d}", "code": code, "field": "height", "value": None,
            "file": "b.gpkg", "message": f"b.gpkg: feature B{row:04d}: {msg}"}


def _tasks(tmp_path: Path, n: int = 60) -> list[Path]:
    """Three tasks owning interleaved rows, with rejections and (multi-issue) repairs."""
    folders = []
    for t in range(3):
        rows = np.arange(t, n, 3)
        rejected = [_issue(int(r), "absurd_height" if r % 2 else "zero_area", "bad") for r in rows if r % 7 == 0]
        repaired = [[_issue(int(r), "height_from_floors", "floors"), _issue(int(r), "make_valid", "fixed")]
                    for r in rows if r % 5 == 0 and r % 7]
        bad = {d["row"] for d in rejected}
        folder = tmp_path / f"t{t}"
        folder.mkdir()
        np.save(folder / "written.npy", np.array([r for r in rows[::-1] if r not in bad], np.int64))
        (folder / "report.json").write_text(json.dumps(
            {"notes": [f"note {t % 2}"], "rejected": rejected[::-1], "repaired": repaired}))
        folders.append(folder)
    return folders


def test_same_report_as_in_memory_merge(tmp_path: Path) -> None:
    folders = _tasks(tmp_path)
    old = _in_memory_merge("buildings", "/x/b.gpkg", 60, folders)
    new = MergedReport("buildings", "/x/b.gpkg", 60, folders)
    for acc in (old, new):
        acc.output.update({"tiles": 3, "partitions": {"level": 2, "tasks": [{"cell": "2/0/0"}]}})
        acc.finalize()
    assert new.counts == old.counts and new.counts["rejected"] > 0 and new.counts["repaired"] > 0
    assert new.rejected_by_code() == old.rejected_by_code()
    assert new.to_dict() == old.to_dict()
    assert new.summary_text(max_lines=3) == old.summary_text(max_lines=3)
    old.write(tmp_path / "a")
    new.write(tmp_path / "b")
    for name in ("report.json", "report.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_layers_json_streamed(tmp_path: Path) -> None:
    folders = _tasks(tmp_path)
    (folders[1] / "report.json").write_text(json.dumps(
        {**json.loads((folders[1] / "report.json").read_text()), "notes": ["arbres élagués"]}), encoding="utf-8")
    old = _in_memory_merge("trees", "/x/t.gpkg", 60, folders)
    new = MergedReport("trees", "/x/t.gpkg", 60, folders)
    empty = tmp_path / "e"
    empty.mkdir()
    np.save(empty / "written.npy", np.arange(3))
    (empty / "report.json").write_text(json.dumps({"notes": [], "rejected": [], "repaired": []}))
    area = _in_memory_merge("green", "g.gpkg", 3, [empty])
    for acc in (old, new):
        acc.note("no DEM given: every base at 0 m orthometric")
        acc.output.update({"partitions": {"level": 2, "tasks": [{"cell": "2/0/0", "bbox": [1.5, 2.0]}]}})
        acc.finalize()
    assert new.notes == old.notes and new.notes[-1].startswith("no DEM")
    expected = json.dumps({"layers": [old.to_dict(), area.to_dict(), MergedReport("green", "g.gpkg", 3, [empty])
                                      .to_dict()]}, ensure_ascii=False, indent=1)
    write_layers_json(tmp_path / "report.json", [new, area, MergedReport("green", "g.gpkg", 3, [empty])])
    assert (tmp_path / "report.json").read_text(encoding="utf-8") == expected
    assert "élagués" in expected and '"rejected": []' in expected


def test_empty_lists_and_checks(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    folder.mkdir()
    np.save(folder / "written.npy", np.arange(4))
    (folder / "report.json").write_text(json.dumps({"notes": [], "rejected": [], "repaired": []}))
    old, new = _in_memory_merge("trees", "t.gpkg", 4, [folder]), MergedReport("trees", "t.gpkg", 4, [folder])
    old.write(tmp_path / "a")
    new.write(tmp_path / "b")
    assert (tmp_path / "a" / "report.json").read_bytes() == (tmp_path / "b" / "report.json").read_bytes()
    with pytest.raises(AccountingError, match="unaccounted"):
        MergedReport("trees", "t.gpkg", 5, [folder]).finalize()
    with pytest.raises(AccountingError, match="twice"):
        MergedReport("trees", "t.gpkg", 4, [folder, folder])


def test_cross_duplicates_in_buckets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    n = 5000
    ids = np.array([f"B{i:05d}" for i in range(n)], dtype=object)
    ids[rng.choice(n, 40, replace=False)] = ids[rng.choice(n, 40)]
    cell_of = rng.integers(0, 7, n)
    cells = {}
    for c in range(7):
        rows = np.flatnonzero(cell_of == c)
        folder = tmp_path / f"3_{c}_1"
        folder.mkdir()
        pt.write_ids(folder, ids[rows], rows)
        cells[f"3/{c}/1"] = {"owned_rows": len(rows)}
    expected: dict[str, dict[int, str]] = {}
    for _id in set(ids[np.unique(ids, return_counts=True)[1][np.searchsorted(np.unique(ids), ids)] > 1]):
        rows = np.flatnonzero(ids == _id)
        if len(set(cell_of[rows])) > 1:
            for r in rows[1:]:
                expected.setdefault(f"3/{cell_of[r]}/1", {})[int(r)] = _id
    monkeypatch.setattr(pt, "_DUP_BUCKET", 600)  # 9 buckets
    assert expected and pt.cross_duplicates(tmp_path, cells) == expected
    assert not (tmp_path / "_dup_hashes").exists()


def test_issue_for(tmp_path: Path) -> None:
    folders = _tasks(tmp_path)
    old, new = _in_memory_merge("b", "b.gpkg", 60, folders), MergedReport("b", "b.gpkg", 60, folders)
    for fid in ("B0007", "B0005", "B0010"):  # rejected, repaired (two issues), repaired
        assert new.issue_for(fid) == old.issue_for(fid)
    assert new.issue_for("B0001") == ("unreported", [])  # written without an issue: no id held
