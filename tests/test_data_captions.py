"""Caption data (generic CSV, Clotho) and labelled folders turned into captions."""

import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechbrain_lmaczs.data import DataPrepError, MissingDataError, prepare_captions, prepare_clotho, prepare_labels
from speechbrain_lmaczs.data import captions as captions_mod
from speechbrain_lmaczs.data import download as download_mod

SAMPLES = Path(__file__).parent / "samples"
ESC50_AUDIO = SAMPLES / "ESC50" / "audio"


def write_wav(path, seconds, rate=16000, channels=1):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.1 * np.random.default_rng(0).standard_normal((int(seconds * rate), channels)), rate)
    return path


def read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def skip_warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "Skipped" in r.getMessage()]


# ---------------------------------------------------------------- generic captions


def test_captions_one_item_per_caption(tmp_path, caplog):
    audio = tmp_path / "audio"
    write_wav(audio / "a.wav", 0.5)
    write_wav(audio / "sub" / "b.flac", 0.25, rate=8000)
    csv = tmp_path / "caps.csv"
    csv.write_text(
        "path,text,extra\n"
        "a.wav,a dog barks,x\n"
        "a.wav,\"a dog, then a car\",x\n"  # second row for the same file; a comma inside quotes
        "sub/b.flac,birds {chirp},x\n"  # braces must survive
        "a.wav,,x\n"  # empty caption
        "gone.wav,never heard,x\n"  # listed, missing
        ",orphan caption,x\n"  # row without a file
    )
    with caplog.at_level(logging.WARNING):
        path = prepare_captions(csv, audio, tmp_path / "save", filename_column="path", caption_columns="text")
    data = read(path)
    assert path.endswith("captions.json")
    assert data["a_1"]["caption"] == "a dog barks" and data["a_2"]["caption"] == "a dog, then a car"
    assert data["sub-b_1"] == {"wav": str(audio / "sub" / "b.flac"), "duration": 0.25, "caption": "birds {chirp}"}
    assert len(data) == 3
    (message,) = skip_warnings(caplog)
    assert "Skipped 3 of 6" in message
    assert "empty text" in message and "gone.wav: missing" in message and "without a file name" in message


def test_captions_several_caption_columns(tmp_path):
    write_wav(tmp_path / "a.wav", 0.1)
    csv = tmp_path / "c.csv"
    csv.write_text("filename,c1,c2\na.wav,first,second\n")
    data = read(prepare_captions(csv, tmp_path, tmp_path, output="c.json", caption_columns=["c1", "c2"]))
    assert [data[k]["caption"] for k in ("a_1", "a_2")] == ["first", "second"]


def test_captions_missing_inputs_are_clear_errors(tmp_path):
    csv = tmp_path / "c.csv"
    csv.write_text("filename,caption\na.wav,x\n")
    with pytest.raises(MissingDataError, match="Audio folder"):
        prepare_captions(csv, tmp_path / "nope", tmp_path)
    with pytest.raises(MissingDataError, match="CSV"):
        prepare_captions(tmp_path / "nope.csv", tmp_path, tmp_path)
    with pytest.raises(DataPrepError, match=r"lacks the column\(s\) \['text'\]"):
        prepare_captions(csv, tmp_path, tmp_path, caption_columns=["text"])


# ---------------------------------------------------------------- labelled folder -> captions


LABELS_CSV = (
    "filename,label,fold\n"
    "1-100032-A-0.wav,dog,1\n"
    "2-100648-A-43.wav,car_horn,2\n"
    "3-103051-C-19.wav,thunderstorm,1\n"
    "4-156993-A-19.wav,,2\n"  # no label
)


def test_labels_manifest_with_captions_and_folds(tmp_path, caplog):
    csv = tmp_path / "labels.csv"
    csv.write_text(LABELS_CSV)
    with caplog.at_level(logging.WARNING):
        data = read(prepare_labels(csv, ESC50_AUDIO, tmp_path))
    assert sorted(data) == ["1-100032-A-0", "2-100648-A-43", "3-103051-C-19"]
    horn = data["2-100648-A-43"]
    assert horn["class_string"] == "car_horn" and horn["fold"] == 2
    assert horn["caption"] == "this is the sound of car horn"
    # classIDs index the sorted labels: car_horn, dog, thunderstorm
    assert [data[k]["classID"] for k in sorted(data)] == [1, 0, 2]
    assert "empty label" in skip_warnings(caplog)[0]
    # a fold subset keeps the same classIDs, and a template changes the captions
    sub = read(prepare_labels(csv, ESC50_AUDIO, tmp_path, "f1.json", folds=[1], template="a recording of {label}"))
    assert sorted(sub) == ["1-100032-A-0", "3-103051-C-19"]
    assert sub["3-103051-C-19"]["classID"] == 2 and sub["3-103051-C-19"]["caption"] == "a recording of thunderstorm"


def test_labels_without_fold_column(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("file,class\n1-100032-A-0.wav,dog\n")
    data = read(prepare_labels(csv, ESC50_AUDIO, tmp_path, filename_column="file", label_column="class"))
    assert data["1-100032-A-0"] == {
        "wav": str(ESC50_AUDIO / "1-100032-A-0.wav"),
        "duration": 5.0,
        "class_string": "dog",
        "classID": 0,
        "caption": "this is the sound of dog",
    }
    with pytest.raises(DataPrepError, match="no 'fold' column"):
        prepare_labels(csv, ESC50_AUDIO, tmp_path, filename_column="file", label_column="class", folds=[1])


def test_labels_bad_options(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text(LABELS_CSV)
    with pytest.raises(DataPrepError, match=r"\{label\}"):
        prepare_labels(csv, ESC50_AUDIO, tmp_path, template="the sound of {class}")
    with pytest.raises(DataPrepError, match="folds"):
        prepare_labels(csv, ESC50_AUDIO, tmp_path, folds=[7])
    csv.write_text("filename,label,fold\n1-100032-A-0.wav,dog,one\n")
    with pytest.raises(DataPrepError, match="must hold integers"):
        prepare_labels(csv, ESC50_AUDIO, tmp_path)


# ---------------------------------------------------------------- Clotho


def _clotho_files(folder):
    """A miniature Clotho development split: two clips, captions CSV with one clip missing on disk."""
    write_wav(folder / "development" / "Distorted AM Radio noise.wav", 0.3, rate=44100)
    write_wav(folder / "development" / "07 ambient bell.wav", 0.2, rate=44100)
    header = "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n"
    rows = [
        "Distorted AM Radio noise.wav,a radio hisses,static crackles,noise rises,a dial turns,\n",  # 4 captions
        "07 ambient bell.wav,a bell rings,a bell tolls,a chime,bells,ringing\n",
        "not here.wav,a,b,c,d,e\n",
    ]
    return header + "".join(rows)


def test_clotho_existing_folder(tmp_path, caplog):
    data_folder = tmp_path / "clotho"
    (data_folder / "development").mkdir(parents=True)
    (data_folder / "clotho_captions_development.csv").write_text(_clotho_files(data_folder))
    with caplog.at_level(logging.WARNING):
        data = read(prepare_clotho(data_folder, tmp_path / "save", download=False))
    assert len(data) == 9
    assert data["07 ambient bell_5"]["caption"] == "ringing"
    assert data["Distorted AM Radio noise_1"]["duration"] == pytest.approx(0.3)
    (message,) = skip_warnings(caplog)
    assert "Skipped 6 of 15" in message and "not here.wav: missing (5 items)" in message
    assert "empty caption_5" in message


def test_clotho_missing_without_download(tmp_path):
    with pytest.raises(MissingDataError, match="download=True"):
        prepare_clotho(tmp_path / "clotho", tmp_path / "save", download=False)


def test_clotho_download_checks_and_unpacks(tmp_path, monkeypatch):
    """Downloads from a file:// mirror, checked against (patched) MD5 sums; the .7z step is stood in for."""
    mirror = tmp_path / "mirror"
    staging = tmp_path / "staging"
    csv_text = _clotho_files(staging)
    mirror.mkdir()
    (mirror / "clotho_captions_development.csv").write_text(csv_text)
    with zipfile.ZipFile(mirror / "clotho_audio_development.7z", "w") as zf:  # a zip under the .7z name
        for wav in (staging / "development").iterdir():
            zf.write(wav, f"development/{wav.name}")

    def unzip_instead(archive, folder):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(folder)

    monkeypatch.setattr(download_mod, "_extract_7z", unzip_instead)
    monkeypatch.setattr(captions_mod, "seven_zip_available", lambda: True)
    for name in ("clotho_captions_development.csv", "clotho_audio_development.7z"):
        monkeypatch.setitem(captions_mod.CLOTHO_MD5, name, hashlib.md5((mirror / name).read_bytes()).hexdigest())
    data_folder = tmp_path / "clotho"
    data = read(prepare_clotho(data_folder, tmp_path / "save", url=mirror.as_uri()))
    assert len(data) == 9
    assert sorted(os.listdir(data_folder)) == ["clotho_captions_development.csv", "development"]

    # the real checksums reject these stand-in files
    monkeypatch.undo()
    monkeypatch.setattr(captions_mod, "seven_zip_available", lambda: True)
    with pytest.raises(DataPrepError, match="checksum"):
        prepare_clotho(tmp_path / "other", tmp_path / "save2", url=mirror.as_uri())
    assert os.listdir(tmp_path / "other") == []  # the rejected download was not kept


def test_clotho_without_7zip_says_what_to_install_before_downloading(tmp_path, monkeypatch):
    monkeypatch.setattr(captions_mod, "seven_zip_available", lambda: False)
    with pytest.raises(DataPrepError, match="py7zr"):
        prepare_clotho(tmp_path / "clotho", tmp_path / "save", url=(tmp_path / "no-such-mirror").as_uri())


def test_docs_worked_example(tmp_path, monkeypatch):
    """The "add your own labelled dataset" example of the README, as written there."""
    from speechbrain_lmaczs.prepare import main

    monkeypatch.chdir(tmp_path)
    write_wav("my_sounds/audio/bells/bell_01.wav", 0.5, rate=22050, channels=2)
    audio, rate = sf.read(write_wav(tmp_path / "tmp.wav", 0.4, rate=48000))
    Path("my_sounds/audio/bells").mkdir(parents=True, exist_ok=True)
    sf.write("my_sounds/audio/bells/bell_02.flac", audio, rate)
    write_wav("my_sounds/audio/birds/robin.wav", 0.3)
    Path("my_sounds/meta.csv").write_text(
        "filename,label,fold\n"
        "bells/bell_01.wav,church_bells,1\n"
        "bells/bell_02.flac,church_bells,2\n"
        "birds/robin.wav,chirping_birds,1\n"
    )
    args = "labels --csv my_sounds/meta.csv --audio_folder my_sounds/audio --save_folder results/data"
    assert main(args.split() + ["--output", "my_sounds.json"]) == 0
    data = read("results/data/my_sounds.json")
    assert sorted(data) == ["bells-bell_01", "bells-bell_02", "birds-robin"]
    assert data["bells-bell_02"]["duration"] == pytest.approx(0.4)
    assert {k: v["classID"] for k, v in data.items()} == {"bells-bell_01": 1, "bells-bell_02": 1, "birds-robin": 0}
    assert data["bells-bell_01"]["caption"] == "this is the sound of church bells"
    assert data["birds-robin"]["fold"] == 1
