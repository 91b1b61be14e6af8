"""Speech pools (any folder, LJSpeech) and the download helper's checks."""

import hashlib
import io
import json
import logging
import os
import shutil
import tarfile
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf

from speechbrain_lmaczs.data import DataPrepError, MissingDataError, prepare_ljspeech, prepare_speech
from speechbrain_lmaczs.data import download as download_mod
from speechbrain_lmaczs.data import speech as speech_mod

SPEECH = Path(__file__).parent / "samples" / "speech"


def read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_speech_folder_recursive_wav_flac_ogg(tmp_path, caplog):
    folder = tmp_path / "speech"
    (folder / "lj").mkdir(parents=True)
    shutil.copy(SPEECH / "LJ050-0131.wav", folder / "lj" / "LJ050-0131.wav")
    audio, rate = sf.read(SPEECH / "spk1_snt1.wav")
    (folder / "a" / "b").mkdir(parents=True)
    sf.write(folder / "a" / "b" / "spk1.FLAC", audio, rate)
    sf.write(folder / "a" / "spk1.ogg", audio, rate, format="OGG", subtype="VORBIS")
    (folder / "a" / "notes.txt").write_text("not audio")
    (folder / "a" / "broken.wav").write_bytes(b"RIFF")
    (folder / ".hidden").mkdir()
    sf.write(folder / ".hidden" / "x.wav", audio, rate)  # e.g. a half-unpacked archive: ignored
    with caplog.at_level(logging.WARNING):
        data = read(prepare_speech(folder, tmp_path / "save"))
    assert sorted(data) == ["a-b-spk1", "a-spk1", "lj-LJ050-0131"]
    assert data["lj-LJ050-0131"]["duration"] == pytest.approx(7.658, abs=1e-3)
    assert data["a-b-spk1"]["duration"] == pytest.approx(2.87)
    assert data["a-spk1"]["duration"] == pytest.approx(2.87, abs=0.01)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Skipped 1 of 4" in warnings[0] and "broken.wav" in warnings[0]


def test_speech_samples_and_errors(tmp_path):
    data = read(prepare_speech(SPEECH, tmp_path))
    assert sorted(data) == ["LJ050-0131", "spk1_snt1", "spk1_snt2", "spk2_snt1", "spk2_snt2"]
    with pytest.raises(MissingDataError, match="Speech folder"):
        prepare_speech(tmp_path / "none", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataPrepError, match="No audio files"):
        prepare_speech(tmp_path / "empty", tmp_path)


def _ljspeech_archive(path):
    with tarfile.open(path, "w:bz2") as tf:
        tf.add(SPEECH / "LJ050-0131.wav", "LJSpeech-1.1/wavs/LJ050-0131.wav")
        meta = b"LJ050-0131|text|text\n"
        info = tarfile.TarInfo("LJSpeech-1.1/metadata.csv")
        info.size = len(meta)
        tf.addfile(info, io.BytesIO(meta))
    return path


def test_ljspeech_download_checked_and_unpacked(tmp_path, monkeypatch):
    archive = _ljspeech_archive(tmp_path / "LJSpeech-1.1.tar.bz2")
    # the published SHA-256 rejects this miniature archive ...
    with pytest.raises(DataPrepError, match="checksum"):
        prepare_ljspeech(tmp_path / "lj1", tmp_path / "save1", url=archive.as_uri())
    assert os.listdir(tmp_path / "lj1") == []
    # ... and its own SHA-256 accepts it
    monkeypatch.setattr(speech_mod, "LJSPEECH_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    data = read(prepare_ljspeech(tmp_path / "lj", tmp_path / "save", url=archive.as_uri()))
    assert list(data) == ["LJ050-0131"]
    assert sorted(os.listdir(tmp_path / "lj")) == ["LJSpeech-1.1"]
    # an unpacked copy is used as it is
    data = read(prepare_ljspeech(tmp_path / "lj" / "LJSpeech-1.1", tmp_path / "save2", download=False))
    assert list(data) == ["LJ050-0131"]


def test_ljspeech_wrong_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.txt").write_text("")
    with pytest.raises(MissingDataError, match="wavs"):
        prepare_ljspeech(tmp_path / "x", tmp_path)
    with pytest.raises(MissingDataError, match="download=True"):
        prepare_ljspeech(tmp_path / "y", tmp_path, download=False)


# ---------------------------------------------------------------- download helper


def test_download_file_checks_size_and_checksum(tmp_path):
    source = tmp_path / "payload.bin"
    source.write_bytes(os.urandom(3000))
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    dest = tmp_path / "out" / "payload.bin"
    download_mod.download_file(source.as_uri(), str(dest), checksum=f"md5:{md5}", chunk_size=512)
    assert dest.read_bytes() == source.read_bytes()
    with pytest.raises(DataPrepError, match="checksum"):
        download_mod.download_file(source.as_uri(), str(tmp_path / "bad.bin"), checksum="md5:" + "0" * 32)
    assert not (tmp_path / "bad.bin").exists() and not (tmp_path / "bad.bin.part").exists()
    with pytest.raises(DataPrepError, match="Could not download"):
        download_mod.download_file((tmp_path / "absent").as_uri(), str(tmp_path / "x.bin"))
    with pytest.raises(ValueError, match="checksum must look like"):
        download_mod.download_file(source.as_uri(), str(tmp_path / "y.bin"), checksum="deadbeef")


class _CutResponse(io.BytesIO):
    """A response that announces more bytes than it delivers (a connection cut mid-way)."""

    headers = {"Content-Length": "1000"}


def test_download_file_detects_a_truncated_transfer(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: _CutResponse(b"x" * 400))
    dest = tmp_path / "big.zip"
    with pytest.raises(DataPrepError, match="received 400 of 1000 bytes"):
        download_mod.download_file("https://example.org/big.zip", str(dest))
    assert os.listdir(tmp_path) == []


def test_extract_archive_refuses_to_overwrite(tmp_path):
    archive = _ljspeech_archive(tmp_path / "lj.tar.bz2")
    dest = tmp_path / "dest"
    (dest / "LJSpeech-1.1").mkdir(parents=True)
    with pytest.raises(DataPrepError, match="overwrite"):
        download_mod.extract_archive(str(archive), str(dest))
    assert sorted(os.listdir(dest)) == ["LJSpeech-1.1"]  # staging folder removed
    assert os.listdir(dest / "LJSpeech-1.1") == []


def test_extract_archive_damaged_tar(tmp_path):
    archive = _ljspeech_archive(tmp_path / "lj.tar.bz2")
    raw = bytearray(archive.read_bytes())
    raw[5000:5100] = bytes(range(100))
    archive.write_bytes(bytes(raw))
    (tmp_path / "dest").mkdir()
    with pytest.raises(DataPrepError, match="damaged"):
        download_mod.extract_archive(str(archive), str(tmp_path / "dest"))
    assert os.listdir(tmp_path / "dest") == []
