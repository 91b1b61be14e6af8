"""A manifest is rebuilt when its sources change, not only its options (issue 14): an edited CSV label, a deleted
audio file; unchanged sources are still reused without probing any audio."""

import json
import os
import shutil
from pathlib import Path

from speechbrain_lmaczs.data import manifest as manifest_mod
from speechbrain_lmaczs.data import prepare_esc50
from speechbrain_lmaczs.prepare import main
from speechbrain_lmaczs.recipe import prepare_eval_manifest

SAMPLES = Path(__file__).parent / "samples"
AUDIO = SAMPLES / "ESC50" / "audio"


def read(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def labels_of(path):
    return {key: entry["class_string"] for key, entry in read(path).items()}


def test_edited_label_rebuilds_the_manifest_on_the_same_command(tmp_path):
    csv = tmp_path / "mine.csv"
    csv.write_text("filename,label\n1-100032-A-0.wav,dog\n2-100648-A-43.wav,car horn\n")
    command = ["labels", "--csv", str(csv), "--audio_folder", str(AUDIO), "--save_folder", str(tmp_path / "save")]
    assert main(command) == 0
    manifest = tmp_path / "save" / "labels.json"
    assert labels_of(manifest) == {"1-100032-A-0": "dog", "2-100648-A-43": "car horn"}
    csv.write_text("filename,label\n1-100032-A-0.wav,dog\n2-100648-A-43.wav,horn\n")
    assert main(command) == 0
    assert labels_of(manifest) == {"1-100032-A-0": "dog", "2-100648-A-43": "horn"}
    assert read(manifest)["2-100648-A-43"]["caption"] == "this is the sound of horn"


def test_edited_label_rebuilds_the_recipes_eval_manifest(tmp_path):
    """The same check inside train.py / eval.py (they prepare through recipe.prepare_eval_manifest)."""
    csv = tmp_path / "mine.csv"
    csv.write_text("filename,label\n1-100032-A-0.wav,dog\n")
    hparams = {
        "eval_dataset": "labels",
        "eval_csv": str(csv),
        "eval_audio_folder": str(AUDIO),
        "manifest_folder": str(tmp_path / "manifests"),
        "eval_folds": None,
        "prompt_template": "this is the sound of {label}",
    }
    manifest = prepare_eval_manifest(hparams)
    assert labels_of(manifest) == {"1-100032-A-0": "dog"}
    csv.write_text("filename,label\n1-100032-A-0.wav,puppy\n")
    assert labels_of(prepare_eval_manifest(hparams)) == {"1-100032-A-0": "puppy"}


def test_deleted_or_rewritten_audio_rebuilds_and_unchanged_sources_are_reused(tmp_path, monkeypatch):
    data = Path(shutil.copytree(SAMPLES / "ESC50", tmp_path / "ESC50"))
    manifest = prepare_esc50(data, tmp_path / "save")
    assert len(read(manifest)) == 5
    built = os.stat(manifest).st_mtime_ns

    def no_probing(_):
        raise AssertionError("rebuilt although nothing changed")

    monkeypatch.setattr(manifest_mod, "probe_audio", no_probing)
    prepare_esc50(data, tmp_path / "save")
    assert os.stat(manifest).st_mtime_ns == built
    monkeypatch.undo()

    (data / "audio" / "1-100032-A-0.wav").unlink()
    prepare_esc50(data, tmp_path / "save")
    assert "1-100032-A-0" not in read(manifest) and len(read(manifest)) == 4

    # A file rewritten in place (same name, another length) changes its size: rebuilt with the new duration.
    clip = data / "audio" / "2-100648-A-43.wav"
    shutil.copyfile(AUDIO / "1-100032-A-0.wav", clip)
    with open(clip, "r+b") as fout:
        fout.truncate(os.path.getsize(clip) // 2 + 22)
    prepare_esc50(data, tmp_path / "save")
    assert read(manifest)["2-100648-A-43"]["duration"] < 5.0


def test_fingerprint_counts_names_sizes_times_and_csv_contents(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"RIFF....")
    (tmp_path / "meta.csv").write_text("x\n1\n")
    fingerprint = manifest_mod.source_fingerprint
    first = fingerprint([tmp_path])
    assert fingerprint([tmp_path]) == first
    os.utime(tmp_path / "a.wav", ns=(1, 1))
    second = fingerprint([tmp_path])
    assert second != first
    (tmp_path / "notes.txt").write_text("not a source")  # neither audio nor CSV
    assert fingerprint([tmp_path]) == second
    (tmp_path / "b.flac").write_bytes(b"fLaC")
    assert fingerprint([tmp_path]) != second
    assert fingerprint([tmp_path / "missing.csv"]) != fingerprint([tmp_path / "other.csv"])
