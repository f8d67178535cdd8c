# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The docs' result tables are what ``python -m benchmarks tables`` makes of the committed results."""

import shutil
from pathlib import Path

import pytest

from benchmarks import doc_tables

REPO = Path(__file__).parents[2]
DEPLOY = "deploy_lite0_intel-r-xeon-r-processor-amx-int8_2t"


def test_every_table_matches_the_committed_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """No grid.md and no marked table of the README, docs/ or model READMEs differs from its result file."""
    monkeypatch.chdir(REPO)
    assert not doc_tables.outdated(), "run: python -m benchmarks tables"


def test_every_result_table_of_the_docs_is_marked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The docs hold the tables the renderers make: the headline, grids, speed, deployment, INT8 and ablations."""
    monkeypatch.chdir(REPO)
    names = [
        match["name"]
        for pattern in doc_tables.DOCUMENTS
        for path in Path().glob(pattern)
        for match in doc_tables.MARKED.finditer(path.read_text())
    ]
    assert set(names) == set(doc_tables.RENDERERS)


def test_a_table_edited_by_hand_is_caught_and_rewritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A changed number in a marked table fails ``--check`` and is put back by a plain run."""
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    shutil.copy(REPO / "benchmarks" / "results" / f"{DEPLOY}.csv", results)
    monkeypatch.chdir(tmp_path)
    table = doc_tables.deploy(DEPLOY)
    assert "| AAND | 1.70 |" in table
    (tmp_path / "README.md").write_text(
        f"intro\n\n<!-- table: deploy {DEPLOY} -->\n{table.replace('| AAND | 1.70 |', '| AAND | 9.99 |')}"
        "<!-- /table -->\n\nafter\n",
    )
    with pytest.raises(SystemExit) as stop:
        doc_tables.main(["--check"])
    assert stop.value.code == 1
    assert "9.99" in (tmp_path / "README.md").read_text()  # --check writes nothing

    doc_tables.main([])
    assert (
        tmp_path / "README.md"
    ).read_text() == f"intro\n\n<!-- table: deploy {DEPLOY} -->\n{table}<!-- /table -->\n\nafter\n"
    assert not doc_tables.outdated()


def test_unknown_table_and_missing_result_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt renderer names the known ones; a result that is not committed names its path."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="unknown table 'depoly'"):
        doc_tables.render_document("<!-- table: depoly x -->\n<!-- /table -->", "README.md")
    with pytest.raises(FileNotFoundError, match="not committed"):
        doc_tables.render_document("<!-- table: deploy missing -->\n<!-- /table -->", "README.md")


def test_a_marker_without_its_end_is_refused() -> None:
    """A missing ``<!-- /table -->`` is an error, not a table that swallows the text up to the next one."""
    text = (
        f"<!-- table: deploy {DEPLOY} -->\n| a |\n\nprose\n\n<!-- table: deploy {DEPLOY} -->\n| b |\n<!-- /table -->\n"
    )
    with pytest.raises(ValueError, match="without its own"):
        doc_tables.render_document(text, "README.md")


def test_outside_the_repository_root_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From a folder without benchmarks/results, --check stops instead of finding nothing to check."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="run from the repository root"):
        doc_tables.main(["--check"])
