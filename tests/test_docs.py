"""The repository's reStructuredText parses cleanly: a broken table or a link to a
section that does not exist shows up here, not as garbled text on the page."""

from __future__ import annotations

import io
from pathlib import Path

import docutils.core
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ["README.rst", "docs/api.rst", "bench/README.rst"]


@pytest.mark.parametrize("name", DOCUMENTS)
def test_document_parses_without_warnings(name: str) -> None:
    """docutils reports no warning or error (malformed tables, unknown link targets,
    bad indentation) for the document."""
    warnings = io.StringIO()
    docutils.core.publish_doctree(
        (ROOT / name).read_text(encoding="utf-8"),
        source_path=name,
        settings_overrides={"report_level": 2, "halt_level": 5, "warning_stream": warnings},
    )
    assert warnings.getvalue() == ""
