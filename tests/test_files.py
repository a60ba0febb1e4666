"""Atomic writes and markdown tables (aqa_framework.files)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from aqa_framework.files import (
    atomic_file,
    is_temporary,
    markdown_table,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)


def test_text_bytes_and_json_writes(tmp_path):
    write_text_atomic(tmp_path / "sub" / "a.txt", "one\r\ntwo\n")
    assert (tmp_path / "sub" / "a.txt").read_bytes() == b"one\r\ntwo\n"
    write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    write_json_atomic(tmp_path / "c.json", {"x": math.nan})
    text = (tmp_path / "c.json").read_text()
    assert text.endswith("}\n")
    assert json.loads(text) == {"x": None, "nonfinite": ["x"]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "c.json", "sub"]


def test_file_object_writer_and_failure_keeps_old_file(tmp_path):
    path = tmp_path / "a.npy"
    with atomic_file(path, "wb") as f:
        np.save(f, np.arange(3))
    assert np.load(path).tolist() == [0, 1, 2]
    with pytest.raises(RuntimeError), atomic_file(path, "wb") as f:
        f.write(b"partial")
        raise RuntimeError("boom")
    assert np.load(path).tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]
    with pytest.raises(ValueError, match="mode"), atomic_file(path, "a"):  # type: ignore[arg-type]
        pass


def test_temporary_names_are_recognised(tmp_path, monkeypatch):
    seen = []
    real_open = open

    def spy(file, *args, **kwargs):
        seen.append(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    write_text_atomic(tmp_path / "x.json", "{}")
    assert seen and is_temporary(seen[0].name)
    assert not is_temporary("x.json")
    assert is_temporary(".last.tmp-123-abcd")


def test_markdown_table():
    table = markdown_table(["a", "b"], [["x|y", "1\n2"]], align=["left", "right"])
    assert table == "| a | b |\n|---|--:|\n| x\\|y | 1 2 |"
    assert markdown_table(["", ""], []) == "|  |  |\n|---|---|"
    with pytest.raises(ValueError, match="row of 1"):
        markdown_table(["a", "b"], [["x"]])
