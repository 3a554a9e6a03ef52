"""tests/seeded_bugs.py stays runnable: every mutation still applies to the code it names.

The mutation check itself is too slow for CI (one test run per mutant). But a refactor that
rewrites a mutated line silently drops that mutant from the record, so each mutation's text
must still occur exactly once in its file.
"""

from __future__ import annotations

import pytest

from seeded_bugs import MUTATIONS, ROOT, area


@pytest.mark.parametrize(("name", "file", "old", "new"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_every_mutation_applies_to_its_file(name, file, old, new):
    source = (ROOT / file).read_text()
    assert source.count(old) == 1, (
        f"{name}: the text to mutate occurs {source.count(old)} times in {file}"
    )
    assert old != new, f"{name}: the mutation changes nothing"


def test_every_area_has_mutants():
    areas = {area(file) for _, file, _, _ in MUTATIONS}
    families = {p.name for p in (ROOT / "kernels").iterdir() if (p / "reference.py").is_file()}
    assert families <= areas, f"op folders without a mutant: {sorted(families - areas)}"
    assert {"engine", "labeler"} <= areas
