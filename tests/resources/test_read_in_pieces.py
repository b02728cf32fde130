"""The YAML reader is given a file piece by piece (yamlload._Chunks, so that a
large file is not copied whole once more): values and positions are those of
the text, across pieces, with characters of several bytes anywhere."""

from __future__ import annotations

import yaml

from meshauthz.resources.yamlload import parse_documents


def test_a_large_file_with_wide_characters_reads_as_written() -> None:
    lines, expected = [], {}
    for i in range(6000):  # far more than one piece (the parser asks for 16 KiB at a time)
        value = f"v{i}-" + "é日本🙂"[: i % 5] * (i % 7)
        pad = " " * (i % 3)
        lines.append(f"{pad}k{i}: {value}" if not pad else f"k{i}:{pad}{value}")
        expected[f"k{i}"] = value
    text = "\n".join(lines) + "\n"
    (doc,) = parse_documents(text, "big.yaml")
    assert doc.data == expected == yaml.safe_load(text)
    for i in (0, 1, 999, 2345, 4097, 5999):
        # a mapping's value is where its key is written: line i + 1, column 1
        assert doc.location((f"k{i}",)).line == i + 1
        assert doc.location((f"k{i}",)).column == 1


def test_positions_after_wide_characters_count_characters() -> None:
    text = "a: " + "日" * 20000 + "\nb:\n  - x\n  - 🙂🙂\n  - {c: d}\n"
    (doc,) = parse_documents(text, "wide.yaml")
    assert doc.data["b"] == ["x", "🙂🙂", {"c": "d"}]
    assert (doc.location(("b", 2, "c")).line, doc.location(("b", 2, "c")).column) == (5, 6)
    assert doc.location(("b", 1)).line == 4
