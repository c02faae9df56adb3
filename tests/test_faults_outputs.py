"""Issue 26: output files are never mixed or misread; annotations with a key given twice are refused."""

import json

import pytest

from modeling_rrg_mamba.data import JsonlWriter, OutputPathError, read_jsonl_records
from modeling_rrg_mamba.data.annotation import BadEntry, read_annotation


@pytest.mark.parametrize("line", ["[1, 2]", '"text"', "3"])
def test_resume_refuses_a_line_that_is_not_a_record(tmp_path, line):
    path = tmp_path / "reports.jsonl"
    path.write_text('{"images": ["a.png"]}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(OutputPathError, match="line 2"):
        read_jsonl_records(path)


def test_resume_refuses_a_record_with_a_key_twice(tmp_path):
    path = tmp_path / "reports.jsonl"
    path.write_text('{"report": "a", "report": "b"}\n', encoding="utf-8")
    with pytest.raises(OutputPathError, match="line 1"):
        read_jsonl_records(path)


def test_second_writer_on_the_same_output_is_refused(tmp_path):
    path = tmp_path / "reports.jsonl"
    with JsonlWriter(path) as write:
        write({"n": 1})
        with pytest.raises(OutputPathError, match="another run"), JsonlWriter(path, append=True):
            pass
    with JsonlWriter(path, append=True) as write:  # the lock is gone once the first writer is done
        write({"n": 2})
    assert [r["n"] for r in read_jsonl_records(path)] == [1, 2]
    assert not (tmp_path / "reports.jsonl.lock").exists()


@pytest.mark.parametrize("key", ["test", "train"])
def test_annotation_with_a_split_given_twice_is_refused(tmp_path, key):
    path = tmp_path / "annotation.json"
    entry = json.dumps([{"id": "a", "report": "r", "image_path": ["x.png"]}])
    path.write_text(f'{{"{key}": {entry}, "val": [], "{key}": {entry}}}', encoding="utf-8")
    with pytest.raises(BadEntry, match=f'"{key}" appears twice'):
        read_annotation(path)
