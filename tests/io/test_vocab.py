"""Vocabularies: the shipped 2017/2018 files, other CSV files, lookup and search, detection, `vtag labels`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from vtag.cli import app
from vtag.errors import VtagError
from vtag.io.records import YT8MRecord, write_records
from vtag.io.vocab import detect_vocabulary, load_vocabulary, vocabulary_for


def test_shipped_vocabularies():
    v18, v17 = load_vocabulary("2018"), load_vocabulary("2017")
    assert (len(v18), len(v17)) == (3862, 4716)
    assert v18.source == "2018" and v17.source == "2017"
    assert v18[0] == v18.name(0) == "Game" and v18.kg_ids[0] == "/m/03bt1gh" and v18.vertical(0) == "Games"
    assert v17[0] == "Games" and v17.kg_ids[0] == "" and v17.vertical(0) == ""
    # 56 classes of the 2018 release have no name: their KG id stands in
    unnamed = [i for i, (n, kg) in enumerate(zip(v18.names, v18.kg_ids)) if n == kg]
    assert len(unnamed) == 56 and v18.name(120) == "/m/0dxrf"
    assert v17[2748] == 'Toys "R" Us'  # a quoted name with quotes inside
    with pytest.raises(VtagError, match="outside the 2018 vocabulary"):
        v18.name(3862)


def test_lookup_and_search():
    v = load_vocabulary("2018")
    assert v.index("guitar") == v.index("Guitar") == v.index("/m/0342h") == 9
    hits = v.search("guitar")
    assert hits[0] == 9 and 34 in hits and all("guitar" in v[i].lower() or "guitar" in " ".join(v.verticals[i]).lower() for i in hits)
    assert v.search("Pets & Animals")  # verticals are searched too
    assert v.search("") == list(range(len(v)))
    with pytest.raises(VtagError, match="did you mean"):
        v.index("guitars")
    assert v.search("no such class at all") == []


def test_other_csv_formats(tmp_path):
    plain = tmp_path / "names.csv"
    plain.write_text("label_id,label_name\n0,Cat\n1,Dogs, cats and more\n2,Bird\n", encoding="utf-8")
    v = load_vocabulary(plain)
    assert len(v) == 3 and v[1] == "Dogs, cats and more"  # unquoted commas: everything after the id
    full = tmp_path / "vocabulary.csv"
    full.write_text("Index,TrainVideoCount,KnowledgeGraphId,Name,WikiUrl,Vertical1,Vertical2,Vertical3,WikiDescription\n"
                    "1,5,/m/b,,,Sports,Games,,x\n0,9,/m/a,Alpha,,(Unknown),,,y\n", encoding="utf-8")
    v = load_vocabulary(str(full))
    assert v.names == ("Alpha", "/m/b") and v.verticals == ((), ("Sports", "Games"))
    gap = tmp_path / "gap.csv"
    gap.write_text("label_id,label_name\n0,a\n2,c\n")
    with pytest.raises(VtagError, match="without gaps"):
        load_vocabulary(gap)
    odd = tmp_path / "odd.csv"
    odd.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(VtagError, match="unknown vocabulary format"):
        load_vocabulary(odd)
    with pytest.raises(VtagError, match="not '2017', '2018' or an existing CSV"):
        load_vocabulary("2019")


def test_vocabulary_for_rules():
    assert vocabulary_for({"2018"}, 3861) == "2018"
    assert vocabulary_for({"2018"}, None) == "2018"
    assert vocabulary_for({"2018"}, 3862) == "2017"  # beyond the 2018 vocabulary
    assert vocabulary_for({"2017"}, 5) == "2017"  # the 2017 schema's key
    with pytest.raises(VtagError, match="outside both"):
        vocabulary_for({"2018"}, 4716)


def _write(path, labels, schema="2018"):
    records = [YT8MRecord(f"x{i}", None if lab is None else np.array(lab, np.int64),
                          np.zeros(1024, np.float32), np.zeros(128, np.float32), "video", schema)
               for i, lab in enumerate(labels)]
    write_records(path, records)
    return path


def test_detect_vocabulary_of_files(tmp_path, repo_root):
    assert detect_vocabulary(repo_root / "examples" / "yt8m-2018-sample.tfrecord") == "2018"
    assert detect_vocabulary(_write(tmp_path / "a.tfrecord", [[1, 200], [3861]])) == "2018"
    assert detect_vocabulary(_write(tmp_path / "b.tfrecord", [[1], [4000, 7]])) == "2017"
    assert detect_vocabulary(_write(tmp_path / "c.tfrecord", [[1], None], schema="2017")) == "2017"
    assert detect_vocabulary([tmp_path / "a.tfrecord", tmp_path / "b.tfrecord"]) == "2017"


def test_detect_vocabulary_of_release(shared_data):
    assert detect_vocabulary(shared_data / "yt8m-2018") == "2018"
    assert detect_vocabulary(shared_data / "yt8m-2017") == "2017"
    assert detect_vocabulary(shared_data / "yt8m-2017" / "testa0.tfrecord") == "2017"  # unlabelled: by key


def test_cli_labels():
    runner = CliRunner()
    result = runner.invoke(app, ["labels", "guitar", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]  # JSON Lines
    assert rows[0] == {"index": 9, "name": "Guitar", "kg_id": "/m/0342h", "verticals": ["Arts & Entertainment"],
                       "vocabulary": "2018"}
    result = runner.invoke(app, ["labels", "--vocab", "2017", "--json"])
    assert result.exit_code == 0 and len(result.output.splitlines()) == 4716
    result = runner.invoke(app, ["labels", "Toys", "--vocab", "2017"], env={"COLUMNS": "120"})
    assert result.exit_code == 0 and "Toys \"R\" Us" in result.output and "2017 vocabulary" in result.output
    result = runner.invoke(app, ["labels", "x", "--vocab", "nope"])
    assert result.exit_code != 0 and isinstance(result.exception, VtagError)
