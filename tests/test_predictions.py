"""Each training's predictions kept on disk beside the journal, memory-mapped, and read back in every form."""
import base64
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from test_search import ROOT, run_search, write_config

from inputs.errors import DataError
from records.claims import read_task_text
from records.predictions import Predictions


def packed(seed: int, rows: int = 37) -> bytes:
    return np.packbits(np.random.default_rng(seed).integers(0, 2, rows, dtype=np.uint8)).tobytes()


def test_each_process_appends_to_its_own_file_and_any_reader_reads_every_one(tmp_path):
    folder = tmp_path / "predictions"
    first, second = Predictions(folder), Predictions(folder)
    task = [packed(0), packed(1), packed(2, rows=90)]
    refs = first.put(task)
    other = second.put([packed(3)])
    # a row holds only where its predictions are: the file, the offset, the length
    assert [ref[1:] for ref in refs] == [[0, 5], [5, 5], [10, 12]]
    assert len({ref[0] for ref in refs}) == 1 and other[0][0] != refs[0][0]
    assert sorted(p.name for p in folder.iterdir()) == sorted({f"{refs[0][0]}.bits", f"{other[0][0]}.bits"})
    reader = Predictions(folder)
    assert [reader.read(ref) for ref in refs + other] == task + [packed(3)]
    # a file that grows after it was mapped (the writer's next task) is mapped again when read past its end
    later = first.put([packed(4)])
    assert later[0][1] == 22
    assert reader.read(later[0]) == packed(4) and reader.read(refs[1]) == packed(1)
    for p in (first, second, reader):
        p.close()


def test_a_database_study_keeps_them_in_its_records_as_base64_and_every_form_reads_back():
    in_records = Predictions(None)
    stored = in_records.put([packed(0), packed(1)])
    assert stored == [base64.b64encode(packed(0)).decode(), base64.b64encode(packed(1)).decode()]
    assert [in_records.read(s) for s in stored] == [packed(0), packed(1)]
    assert in_records.read(packed(2)) == packed(2)  # as they come from a worker


def test_a_missing_or_cut_file_is_a_clear_error_naming_it(tmp_path):
    folder = tmp_path / "predictions"
    writer = Predictions(folder)
    ref = writer.put([packed(0)])[0]
    writer.close()
    with pytest.raises(DataError, match="shorter than the study says") as cut:
        Predictions(folder).read([ref[0], 3, 5])
    assert cut.value.path == str(folder / f"{ref[0]}.bits")
    (folder / f"{ref[0]}.bits").unlink()
    with pytest.raises(DataError, match=r"is missing.*predictions/ folder beside its study.journal"):
        Predictions(folder).read(ref)


def test_the_journal_holds_where_predictions_are_and_a_run_without_them_stops_cleanly(tmp_path, data_dir):
    config = write_config(tmp_path, data_dir, grid={"learning_rate": [1e-2, 1e-3], "optimizer": ["adam", "sgd"]},
                          RERUN_COUNT=2)
    results, run = tmp_path / "results", tmp_path / "results" / "small"
    done = run_search(config, results)
    assert done.returncode == 0, done.stderr
    kept = Predictions(run / "predictions")
    rows = 0
    for line in (run / "study.journal").read_text().splitlines():
        record = json.loads(line)
        if record["op_code"] != 4:  # not a trial created
            continue
        for entry in read_task_text(record["user_attrs"]["combinations"]):
            for row in entry["reruns"]:
                _, _, length = row["bits"]  # not the predictions themselves
                assert len(kept.read(row["bits"])) == length > 0
                rows += 1
    assert rows == 4 * 2
    kept.close()
    ranking = (run / "ranking.csv").read_text()

    # the study without its predictions (the journal copied alone): resuming says what is missing
    for f in (run / "predictions").iterdir():
        f.unlink()
    again = run_search(config, results)
    assert again.returncode == 2
    assert "predictions file" in again.stderr and "beside its study.journal" in again.stderr
    assert "Traceback" not in again.stderr
    ranked = subprocess.run([sys.executable, "evaluate.py", str(run)], cwd=ROOT, capture_output=True, text=True)
    assert ranked.returncode == 2 and "predictions file" in ranked.stderr and "Traceback" not in ranked.stderr
    assert (run / "ranking.csv").read_text() == ranking  # nothing already written is lost
    assert len(pd.read_csv(run / "ranking.csv")) == 4
