"""ESC-50 and UrbanSound8K preparation, the manifest machinery (idempotency, interruptions, bad data) and the CLI."""

import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from speechbrain_lmaczs.data import DataPrepError, MissingDataError, prepare_esc50, prepare_urbansound8k
from speechbrain_lmaczs import files as files_mod
from speechbrain_lmaczs.data import manifest as manifest_mod
from speechbrain_lmaczs.prepare import main

SAMPLES = Path(__file__).parent / "samples"
ESC50_IDS = ["1-100032-A-0", "2-100648-A-43", "3-103051-C-19", "4-156993-A-19", "5-156999-C-19"]
US8K_HEADER = "slice_file_name,fsID,start,end,salience,fold,classID,class\n"


def write_wav(path, seconds, rate=16000, channels=1):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    sf.write(path, 0.1 * rng.standard_normal((int(seconds * rate), channels)), rate)
    return path


def read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def skip_warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "Skipped" in r.getMessage()]


@pytest.fixture
def esc50_copy(tmp_path):
    """A writable copy of the sample ESC-50 folder (official layout: audio/ and meta/)."""
    return Path(shutil.copytree(SAMPLES / "ESC50", tmp_path / "ESC50"))


# ---------------------------------------------------------------- ESC-50


def test_esc50_samples_whole_dataset(tmp_path):
    path = prepare_esc50(SAMPLES / "ESC50", tmp_path / "save")
    assert path == str(tmp_path / "save" / "esc50.json")
    data = read(path)
    assert sorted(data) == ESC50_IDS
    horn = data["2-100648-A-43"]
    assert horn["class_string"] == "car_horn" and horn["classID"] == 43 and horn["fold"] == 2
    assert horn["duration"] == pytest.approx(5.0)
    assert os.path.isabs(horn["wav"]) and os.path.isfile(horn["wav"])


def test_esc50_folds(tmp_path):
    data = read(prepare_esc50(SAMPLES / "ESC50", tmp_path, folds=[3, 1], output="f13.json"))
    assert sorted(data) == ["1-100032-A-0", "3-103051-C-19"]
    assert {e["fold"] for e in data.values()} == {1, 3}
    with pytest.raises(DataPrepError, match="folds"):
        prepare_esc50(SAMPLES / "ESC50", tmp_path, folds=[6])


def test_esc50_accepts_unzipped_subfolder(tmp_path):
    shutil.copytree(SAMPLES / "ESC50", tmp_path / "data" / "ESC-50-master")
    data = read(prepare_esc50(tmp_path / "data", tmp_path / "save", download=False))
    assert len(data) == 5 and all("ESC-50-master" in e["wav"] for e in data.values())


def test_esc50_wrong_folder_is_a_clear_error(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("not ESC-50")
    with pytest.raises(MissingDataError, match="meta"):
        prepare_esc50(tmp_path / "data", tmp_path / "save")
    with pytest.raises(MissingDataError, match="download=True"):
        prepare_esc50(tmp_path / "empty", tmp_path / "save", download=False)
    assert not (tmp_path / "save" / "esc50.json").exists()


def test_esc50_bad_files_are_listed_in_one_warning_and_skipped(esc50_copy, tmp_path, caplog):
    audio = esc50_copy / "audio"
    (audio / "2-100648-A-43.wav").write_bytes(b"")  # empty file
    (audio / "3-103051-C-19.wav").write_bytes(b"this is not audio" * 10)  # unreadable
    sf.write(audio / "4-156993-A-19.wav", np.zeros((0, 1)), 44100)  # header, no samples
    os.remove(audio / "5-156999-C-19.wav")  # listed, missing
    with open(esc50_copy / "meta" / "esc50.csv", "a") as f:
        f.write(",1,0,dog,True,1,A\n")  # row without a file
    with caplog.at_level(logging.WARNING):
        data = read(prepare_esc50(esc50_copy, tmp_path / "save"))
    assert sorted(data) == ["1-100032-A-0"]
    (message,) = skip_warnings(caplog)
    assert "Skipped 5 of 6" in message
    for expected in ("empty file", "unreadable", "zero-length audio", "missing", "without a file name"):
        assert expected in message


def test_esc50_nothing_usable_raises(esc50_copy, tmp_path):
    for wav in (esc50_copy / "audio").iterdir():
        wav.unlink()
    with pytest.raises(DataPrepError, match="No usable audio"):
        prepare_esc50(esc50_copy, tmp_path / "save")
    assert not (tmp_path / "save" / "esc50.json").exists()


def test_esc50_missing_column_is_a_clear_error(esc50_copy, tmp_path):
    (esc50_copy / "meta" / "esc50.csv").write_text("filename,fold\n1-100032-A-0.wav,1\n")
    with pytest.raises(DataPrepError, match=r"lacks the column\(s\) \['target', 'category'\]"):
        prepare_esc50(esc50_copy, tmp_path / "save")


# ---------------------------------------------------------------- idempotency and interruptions


def test_rerun_with_same_options_does_no_work(tmp_path, monkeypatch):
    path = prepare_esc50(SAMPLES / "ESC50", tmp_path)
    before = os.stat(path).st_mtime_ns

    def no_probing(_):
        raise AssertionError("the manifest was rebuilt")

    monkeypatch.setattr(manifest_mod, "probe_audio", no_probing)
    assert prepare_esc50(SAMPLES / "ESC50", tmp_path) == path
    assert os.stat(path).st_mtime_ns == before
    # other options: rebuilt
    monkeypatch.undo()
    prepare_esc50(SAMPLES / "ESC50", tmp_path, folds=[1])
    assert list(read(path)) == ["1-100032-A-0"]
    assert read(manifest_mod.options_path(path))["folds"] == [1]


def test_manifest_without_options_is_not_trusted(tmp_path):
    path = tmp_path / "esc50.json"
    path.write_text('{"stale": {"wav": "x.wav", "duration": 1.0}}')
    prepare_esc50(SAMPLES / "ESC50", tmp_path)
    assert sorted(read(path)) == ESC50_IDS


def test_interrupted_write_leaves_no_trusted_manifest(tmp_path, monkeypatch):
    prepare_esc50(SAMPLES / "ESC50", tmp_path)  # options A: all folds
    real_dump = json.dump

    def dump_then_die(obj, f, **kwargs):
        f.write('{"1-100032-A-0": {"wav": ')  # half a manifest
        raise KeyboardInterrupt

    monkeypatch.setattr(files_mod.json, "dump", dump_then_die)
    with pytest.raises(KeyboardInterrupt):
        prepare_esc50(SAMPLES / "ESC50", tmp_path, folds=[2])  # options B, interrupted
    monkeypatch.setattr(files_mod.json, "dump", real_dump)
    assert sorted(os.listdir(tmp_path)) == ["esc50.json"]  # old manifest, no options, no temp file
    assert sorted(read(tmp_path / "esc50.json")) == ESC50_IDS
    # A rerun with options A must not trust that manifest blindly, and B must be built from scratch.
    calls = []
    real_probe = manifest_mod.probe_audio
    monkeypatch.setattr(manifest_mod, "probe_audio", lambda p: calls.append(p) or real_probe(p))
    prepare_esc50(SAMPLES / "ESC50", tmp_path)
    assert len(calls) == 5
    assert list(read(prepare_esc50(SAMPLES / "ESC50", tmp_path, folds=[2]))) == ["2-100648-A-43"]


# ---------------------------------------------------------------- ESC-50 download


def _esc50_zip(path, drop=None):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for wav in sorted((SAMPLES / "ESC50" / "audio").iterdir()):
            if wav.name != drop:
                zf.write(wav, f"ESC-50-master/audio/{wav.name}")
        zf.write(SAMPLES / "ESC50" / "meta" / "esc50.csv", "ESC-50-master/meta/esc50.csv")
    return path


def test_esc50_download_into_empty_folder(tmp_path):
    url = _esc50_zip(tmp_path / "master.zip").as_uri()
    data_folder = tmp_path / "ESC50"
    data = read(prepare_esc50(data_folder, tmp_path / "save", url=url))
    assert sorted(data) == ESC50_IDS
    assert sorted(os.listdir(data_folder)) == ["ESC-50-master"]  # archive and staging folder cleaned up
    assert all(e["wav"].startswith(str(data_folder / "ESC-50-master" / "audio")) for e in data.values())


def test_esc50_download_incomplete_archive_is_refused(tmp_path):
    url = _esc50_zip(tmp_path / "master.zip", drop="3-103051-C-19.wav").as_uri()
    with pytest.raises(DataPrepError, match="incomplete: 1 of 5"):
        prepare_esc50(tmp_path / "ESC50", tmp_path / "save", url=url)
    assert not (tmp_path / "save" / "esc50.json").exists()


def test_esc50_download_damaged_archive_is_refused(tmp_path):
    archive = _esc50_zip(tmp_path / "master.zip")
    raw = bytearray(archive.read_bytes())
    raw[2000:2100] = bytes(range(7, 107))  # inside the first member's samples: its CRC no longer matches
    archive.write_bytes(bytes(raw))
    with pytest.raises(DataPrepError, match="damaged"):
        prepare_esc50(tmp_path / "ESC50", tmp_path / "save", url=archive.as_uri())
    # nothing half-unpacked is left that a rerun could mistake for the dataset
    assert all(name.startswith(".") for name in os.listdir(tmp_path / "ESC50"))


# ---------------------------------------------------------------- UrbanSound8K


def _us8k(root, rows, all_folds=True):
    """A fake UrbanSound8K: metadata CSV + generated clips (rate, channels, seconds given per row)."""
    (root / "metadata").mkdir(parents=True)
    lines = [US8K_HEADER]
    for name, fold, class_id, label, salience, rate, channels, seconds in rows:
        lines.append(f"{name},1,0.0,{seconds},{salience},{fold},{class_id},{label}\n")
        if rate:
            write_wav(root / "audio" / f"fold{fold}" / name, seconds, rate, channels)
    (root / "metadata" / "UrbanSound8K.csv").write_text("".join(lines))
    for fold in range(1, 11) if all_folds else ():
        (root / "audio" / f"fold{fold}").mkdir(parents=True, exist_ok=True)
    return root


US8K_ROWS = [
    ("100032-3-0-0.wav", 1, 3, "dog_bark", 1, 22050, 2, 0.5),
    ("100263-2-0-117.wav", 1, 2, "children_playing", 2, 48000, 1, 1.0),
    ("101415-3-0-2.wav", 2, 3, "dog_bark", 1, 8000, 1, 0.25),
    ("102106-3-0-0.wav", 2, 3, "dog_bark", 2, 44100, 2, 0.75),
]


def test_urbansound8k_fake_layout(tmp_path):
    root = _us8k(tmp_path / "UrbanSound8K", US8K_ROWS)
    data = read(prepare_urbansound8k(root, tmp_path / "save"))
    assert sorted(data) == ["100032-3-0-0", "100263-2-0-117", "101415-3-0-2", "102106-3-0-0"]
    first = data["100032-3-0-0"]
    assert first["duration"] == pytest.approx(0.5) and first["salience"] == 1
    assert first["class_string"] == "dog_bark" and first["classID"] == 3 and first["fold"] == 1
    assert first["wav"].endswith(os.path.join("audio", "fold1", "100032-3-0-0.wav"))
    assert data["101415-3-0-2"]["duration"] == pytest.approx(0.25)  # 8 kHz clip: frames / rate
    # the tarball's own top folder is accepted too, and folds select rows
    data = read(prepare_urbansound8k(tmp_path, tmp_path / "save", folds=[2], output="f2.json"))
    assert sorted(data) == ["101415-3-0-2", "102106-3-0-0"]


def test_urbansound8k_says_exactly_what_is_missing(tmp_path):
    with pytest.raises(MissingDataError, match="request it at"):
        prepare_urbansound8k(tmp_path / "nowhere", tmp_path / "save")
    root = tmp_path / "partial"
    (root / "audio" / "fold1").mkdir(parents=True)
    (root / "audio" / "fold2").mkdir(parents=True)
    with pytest.raises(MissingDataError) as err:
        prepare_urbansound8k(root, tmp_path / "save")
    message = str(err.value)
    assert "metadata/UrbanSound8K.csv" in message.replace(os.sep, "/")
    assert "audio/fold3/" in message and "audio/fold10/" in message and "audio/fold1/" not in message
    # asking only for the folds that are there: only the metadata is missing
    with pytest.raises(MissingDataError, match=r"missing: metadata.UrbanSound8K\.csv\."):
        prepare_urbansound8k(root, tmp_path / "save", folds=[1, 2])


def test_urbansound8k_real_metadata_without_audio(tmp_path):
    """The official CSV with an empty audio tree: the missing folds are named; then the missing files."""
    root = tmp_path / "UrbanSound8K"
    shutil.copytree(SAMPLES / "UrbanSound8K" / "metadata", root / "metadata")
    with pytest.raises(MissingDataError, match="audio/fold1/, audio/fold2/"):
        prepare_urbansound8k(root, tmp_path / "save")


def test_urbansound8k_real_metadata_fold_counts_and_missing_files(tmp_path, caplog):
    root = tmp_path / "UrbanSound8K"
    shutil.copytree(SAMPLES / "UrbanSound8K" / "metadata", root / "metadata")
    meta = pd.read_csv(root / "metadata" / "UrbanSound8K.csv")
    assert len(meta) == 8732
    assert meta.groupby("fold").size().tolist() == [873, 888, 925, 990, 936, 823, 838, 806, 816, 837]
    present = meta[meta.fold == 10].head(3)
    for name in present.slice_file_name:
        write_wav(root / "audio" / "fold10" / name, 0.1, 22050)
    with caplog.at_level(logging.WARNING):
        data = read(prepare_urbansound8k(root, tmp_path / "save", folds=[10]))
    assert sorted(data) == sorted(n[:-4] for n in present.slice_file_name)
    (message,) = skip_warnings(caplog)
    assert message.startswith("Skipped 834 of 837")


def test_urbansound8k_bad_files(tmp_path, caplog):
    rows = US8K_ROWS + [("999-1-0-0.wav", 2, 1, "car_horn", 1, None, 1, 1.0)]  # listed, not there
    root = _us8k(tmp_path / "U", rows)
    (root / "audio" / "fold1" / "100263-2-0-117.wav").write_bytes(b"RIFF....WAVEjunk")
    with caplog.at_level(logging.WARNING):
        data = read(prepare_urbansound8k(root, tmp_path / "save"))
    assert len(data) == 3
    (message,) = skip_warnings(caplog)
    assert "Skipped 2 of 5" in message and "999-1-0-0.wav: missing" in message and "unreadable" in message


# ---------------------------------------------------------------- command line


def test_cli_contract_in_a_subprocess(tmp_path):
    """The documented command, run as users run it."""
    result = subprocess.run(
        [sys.executable, "-m", "speechbrain_lmaczs.prepare", "esc50"]
        + ["--data_folder", str(SAMPLES / "ESC50"), "--save_folder", str(tmp_path), "--folds", "1", "2"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    assert result.returncode == 0, result.stderr
    assert sorted(read(tmp_path / "esc50.json")) == ESC50_IDS[:2]


def test_cli_subcommands(tmp_path):
    assert main(["esc50", "--data_folder", str(SAMPLES / "ESC50"), "--save_folder", str(tmp_path)]) == 0
    assert len(read(tmp_path / "esc50.json")) == 5
    root = _us8k(tmp_path / "UrbanSound8K", US8K_ROWS)
    assert main(["urbansound8k", "--data_folder", str(root), "--save_folder", str(tmp_path)]) == 0
    assert len(read(tmp_path / "urbansound8k.json")) == 4
    assert main(["speech", "--data_folder", str(SAMPLES / "speech"), "--save_folder", str(tmp_path)]) == 0
    assert len(read(tmp_path / "speech.json")) == 5

    csv = tmp_path / "mine.csv"
    csv.write_text(
        "filename,label,fold,caption\n1-100032-A-0.wav,dog,1,a dog barks\n2-100648-A-43.wav,car_horn,2,a horn\n"
    )
    audio = str(SAMPLES / "ESC50" / "audio")
    assert main(["captions", "--csv", str(csv), "--audio_folder", audio, "--save_folder", str(tmp_path)]) == 0
    assert read(tmp_path / "captions.json")["1-100032-A-0_1"]["caption"] == "a dog barks"
    args = ["labels", "--csv", str(csv), "--audio_folder", audio, "--save_folder", str(tmp_path)]
    assert main(args + ["--folds", "2", "--output", "mine.json"]) == 0
    assert read(tmp_path / "mine.json")["2-100648-A-43"]["caption"] == "this is the sound of car horn"

    clotho = tmp_path / "clotho"
    write_wav(clotho / "development" / "a b.wav", 0.2)
    (clotho / "clotho_captions_development.csv").write_text(
        "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\na b.wav,one,two,three,four,five\n"
    )
    assert main(["clotho", "--data_folder", str(clotho), "--save_folder", str(tmp_path), "--no_download"]) == 0
    assert len(read(tmp_path / "clotho.json")) == 5


def test_cli_reports_data_errors_without_traceback(tmp_path, capsys):
    status = main(["urbansound8k", "--data_folder", str(tmp_path / "none"), "--save_folder", str(tmp_path)])
    assert status == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m speechbrain_lmaczs.prepare: error: ")
    assert "request it at" in lines[0]


# ---------------------------------------------------------------- the dataset table


def test_every_coded_dataset_is_a_prepare_subcommand_and_a_recipe_choice():
    from speechbrain_lmaczs.data import DATASETS, datasets_of_kind
    from speechbrain_lmaczs.explain import EVAL_MANIFESTS
    from speechbrain_lmaczs.prepare import build_parser
    from speechbrain_lmaczs.recipe import EVAL_DATASETS, TRAIN_DATA

    for name, dataset in DATASETS.items():
        args = build_parser().parse_args([name, "--data_folder", "d", "--save_folder", "s"])
        assert args.output == dataset.manifest and hasattr(args, "folds") == bool(dataset.folds)
        assert hasattr(args, "no_download") == dataset.downloads
    assert EVAL_DATASETS == ("esc50", "urbansound8k", "labels", "manifest")
    assert TRAIN_DATA == ("clotho", "captions", "labels", "manifest")
    assert EVAL_MANIFESTS == {name: DATASETS[name].manifest for name in datasets_of_kind("labels")} | {
        "labels": "eval_labels.json"
    }


def test_coded_dataset_runs_its_preparation_with_the_table_defaults(tmp_path):
    from speechbrain_lmaczs.data import DATASETS

    path = DATASETS["esc50"].run(SAMPLES / "ESC50", tmp_path, folds=[1, 2])
    assert path == str(tmp_path / "esc50.json") and sorted(read(path)) == ["1-100032-A-0", "2-100648-A-43"]
    with pytest.raises(DataPrepError, match="prepare_speech takes no folds"):
        DATASETS["speech"].run(SAMPLES / "speech", tmp_path, folds=[1])
