"""The smaller problems of issue 14, each as behaviour: file modes, --overwrite, duplicate CSV rows, short warnings,
an incomplete UrbanSound8K, loud samples, repeated prompts, a too large --top-k, non-Latin prompt names."""

import json
import logging
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechbrain_lmaczs.cli import main as lmaczs_main
from speechbrain_lmaczs.data import MissingDataError, prepare_labels, prepare_urbansound8k
from speechbrain_lmaczs.data.manifest import MAX_EXAMPLES, report_skipped
from speechbrain_lmaczs.recipe import slug
from speechbrain_lmaczs.recording import read_recording
from speechbrain_lmaczs.report import WRITTEN

SAMPLES = Path(__file__).parent / "samples"
AUDIO = SAMPLES / "ESC50" / "audio"
CLIP = AUDIO / "1-100032-A-0.wav"


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_manifests_and_their_stamps_follow_the_umask_like_other_outputs(tmp_path, umask_022):
    csv = tmp_path / "mine.csv"
    csv.write_text("filename,label\n1-100032-A-0.wav,dog\n")
    manifest = prepare_labels(csv, AUDIO, tmp_path / "save")
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert mode(manifest) == mode(tmp_path / "save" / "labels_options.json") == mode(plain) == 0o644


def test_duplicate_row_with_another_label_claims_no_class_id(tmp_path, caplog):
    csv = tmp_path / "mine.csv"
    csv.write_text(
        "filename,label\n1-100032-A-0.wav,dog\n2-100648-A-43.wav,horn\n1-100032-A-0.wav,aardvark\n"
    )
    with caplog.at_level(logging.WARNING):
        data = json.loads(Path(prepare_labels(csv, AUDIO, tmp_path / "save")).read_text())
    # "aardvark" would sort first and shift every real class by one.
    assert {key: (e["class_string"], e["classID"]) for key, e in data.items()} == {
        "1-100032-A-0": ("dog", 0),
        "2-100648-A-43": ("horn", 1),
    }
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "line 4" in warning and "first on line 2" in warning and "aardvark" in warning
    # With folds: the repeated row in the asked fold is still the repeat (the first row's fold is not asked for).
    csv.write_text(
        "filename,label,fold\n1-100032-A-0.wav,dog,1\n2-100648-A-43.wav,horn,2\n1-100032-A-0.wav,aardvark,2\n"
    )
    data = json.loads(Path(prepare_labels(csv, AUDIO, tmp_path / "save", "f2.json", folds=[2])).read_text())
    assert {key: (e["class_string"], e["classID"]) for key, e in data.items()} == {"2-100648-A-43": ("horn", 1)}


def test_skip_warning_lists_a_few_examples_and_the_count(caplog):
    skipped = [(f"/data/clip{i}.wav", "missing") for i in range(1882)]
    with caplog.at_level(logging.WARNING):
        report_skipped(skipped, 2000, "meta.csv")
    (message,) = [r.getMessage() for r in caplog.records]
    lines = message.splitlines()
    assert lines[0] == "Skipped 1882 of 2000 items of meta.csv:"
    assert len(lines) == 1 + MAX_EXAMPLES + 1 and lines[-1] == f"  ... and {1882 - MAX_EXAMPLES} more"


def test_incomplete_urbansound8k_suggests_the_folds_present(tmp_path):
    root = tmp_path / "UrbanSound8K"
    (root / "metadata").mkdir(parents=True)
    (root / "metadata" / "UrbanSound8K.csv").write_text("slice_file_name,fsID,start,end,salience,fold,classID,class\n")
    for fold in (1, 3):
        (root / "audio" / f"fold{fold}").mkdir(parents=True)
    with pytest.raises(MissingDataError) as info:
        prepare_urbansound8k(root, tmp_path / "save")
    assert "pass --folds 1 3 (yaml: eval_folds: [1, 3])" in str(info.value)


def test_a_sample_far_beyond_full_scale_warns(tmp_path, caplog):
    data = 0.01 * np.sin(np.linspace(0, 2000, 16000)).astype("float32")
    data[8000] = 1e6
    path = tmp_path / "click.wav"
    sf.write(path, data, 16000, subtype="FLOAT")
    with caplog.at_level(logging.WARNING):
        read_recording(path)
    (message,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "1 samples beyond full scale" in message and "1e+06 at 0.500 s" in message
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        read_recording(CLIP)  # an ordinary clip: nothing to say
    assert not caplog.records


def test_non_latin_prompts_keep_a_readable_file_name():
    assert slug("lmaczs_狗在叫") == "lmaczs_狗在叫"
    assert slug("gradcam_sirène d'ambulance") == "gradcam_sirène_d_ambulance"
    assert slug("  ") == "prompt"


def test_overwrite_replaces_only_files_lmaczs_wrote(tmp_path, capsys):
    """A user's own original.wav in --out is never replaced, with or without --overwrite (checked before loading:
    the checkpoint here is not even a run)."""
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "original.wav"
    sf.write(mine, np.zeros(10, dtype="float32") + 0.1, 8000)
    before = mine.read_bytes()
    argv = ["explain", str(CLIP), "--checkpoint", str(tmp_path), "--out", str(out), "--prompt", "dog", "--overwrite"]
    assert lmaczs_main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was not written by lmaczs" in err[0]
    assert mine.read_bytes() == before
    # Recorded as lmaczs's own, it may be replaced: the check passes and the run goes on to the checkpoint.
    (out / WRITTEN).write_text(json.dumps(["original.wav", "report.html"]))
    assert lmaczs_main(argv) == 1
    assert "not a training output folder" in capsys.readouterr().err


def test_repeated_prompts_and_a_too_large_top_k_are_reported(trained_mel_run, tmp_path, caplog):
    """(In a terminal, the warnings are lines on stderr; in-process, pytest's log capture holds them.)"""
    out = tmp_path / "out"
    argv = ["explain", str(CLIP), "--checkpoint", str(trained_mel_run), "--out", str(out)]
    with caplog.at_level(logging.WARNING):
        assert lmaczs_main(argv + ["--prompt", "rain", "--prompt", "rain ", "--prompt", "dog"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["Prompts given more than once are explained once: 'rain'."]
    assert (out / "lmaczs_rain.wav").is_file() and (out / "lmaczs_dog.wav").is_file()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert lmaczs_main(argv + ["--top-k", "50", "--overwrite"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["top_k is 50 but the label set has 3 classes: explaining all 3."]


def test_a_write_that_fails_after_the_checks_is_one_line(trained_mel_run, tmp_path, monkeypatch, capsys):
    import errno

    from speechbrain_lmaczs import report

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(report, "write_report", full_disk)
    argv = ["explain", str(CLIP), "--checkpoint", str(trained_mel_run), "--out", str(tmp_path / "out"), "--prompt", "a"]
    assert lmaczs_main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"lmaczs: error: Could not write the report in {tmp_path / 'out'}: No space left on device."]
