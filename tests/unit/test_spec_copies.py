"""Our copies of SPEC's worked examples must not drift from the originals."""

from __future__ import annotations

import pytest

from tests.support.logs import _SHARED, GOLDEN


@pytest.mark.skipif(not _SHARED.is_dir(), reason="no ../shared beside this clone")
@pytest.mark.parametrize(
    "name",
    [
        f"{example}{suffix}"
        for example in ("commissions", "metering", "retention", "lifecycle")
        for suffix in (".jsonl", ".expected.json")
    ],
)
def test_copies_match_shared(name):
    assert (GOLDEN / f"spec-{name}").read_text() == (_SHARED / name).read_text()
