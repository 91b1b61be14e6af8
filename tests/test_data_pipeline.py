"""The audio pipeline: manifests -> DynamicItemDataset of fixed-length, normalised mono clips."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from speechbrain.dataio.batch import PaddedBatch

from speechbrain_lmaczs.data import (
    DataPrepError,
    MissingDataError,
    class_names,
    load_audio,
    make_dataset,
    prepare_esc50,
    prepare_labels,
)
from speechbrain_lmaczs.data.pipeline import fix_length

SAMPLES = Path(__file__).parent / "samples"
RATE = 8000


@pytest.fixture(scope="module")
def esc50_manifest(tmp_path_factory):
    return prepare_esc50(SAMPLES / "ESC50", tmp_path_factory.mktemp("esc50"))


def ramp_wav(path, samples, rate=RATE, channels=1):
    """A float WAV whose sample k holds (k + 1) / samples (so crops can be located exactly)."""
    ramp = (np.arange(samples, dtype=np.float32) + 1) / samples
    sf.write(path, np.repeat(ramp[:, None], channels, axis=1), rate, subtype="FLOAT")
    return ramp


def manifest(tmp_path, entries, name="m.json"):
    path = tmp_path / name
    path.write_text(json.dumps(entries))
    return path


def test_esc50_items(esc50_manifest):
    dataset = make_dataset(esc50_manifest, sample_rate=16000, clip_samples=16000 * 2)
    assert len(dataset) == 5
    item = dataset[1]
    assert item["id"] == "2-100648-A-43"
    assert item["wav"].shape == (32000,) and item["wav"].dtype == torch.float32
    assert float(item["wav"].abs().max()) == pytest.approx(1.0, abs=1e-6)
    assert item["class_string"] == "car_horn" and item["classID"] == 43
    assert item["caption"] == "this is the sound of car horn"
    names = class_names(esc50_manifest)
    assert names == ["dog", "thunderstorm", "car_horn"]  # ordered by classID 0, 19, 43
    assert names[item["label"]] == "car_horn"
    # a custom class list and template
    other = make_dataset(esc50_manifest, 16000, 16000, labels=["car_horn", "dog", "thunderstorm"], template="{label}!")
    assert other[1]["label"] == 0 and other[1]["caption"] == "car horn!"
    with pytest.raises(DataPrepError, match="not in labels"):
        make_dataset(esc50_manifest, 16000, 16000, labels=["dog"])


def test_batches_collate(esc50_manifest):
    dataset = make_dataset(esc50_manifest, sample_rate=RATE, clip_samples=RATE)
    batch = PaddedBatch([dataset[0], dataset[1], dataset[2]])
    assert batch.wav.data.shape == (3, RATE)
    assert batch.label.tolist() == [0, 2, 1]
    assert batch.caption[0] == "this is the sound of dog"


def test_centre_crop_is_deterministic_and_train_crop_random(tmp_path):
    ramp = ramp_wav(tmp_path / "long.wav", 1000)
    path = manifest(tmp_path, {"x": {"wav": str(tmp_path / "long.wav"), "duration": 0.125}})
    evaluation = make_dataset(path, RATE, 100, train=False)
    expected = torch.from_numpy(ramp[450:550])
    assert torch.allclose(evaluation[0]["wav"], expected / expected.max(), atol=1e-6)
    assert torch.equal(evaluation[0]["wav"], evaluation[0]["wav"])
    training = make_dataset(path, RATE, 100, train=True)
    starts = set()
    for seed in range(6):
        torch.manual_seed(seed)
        wav = training[0]["wav"]
        # normalised window of the ramp starting at s: w_0 = (s + 1) / (s + 100), hence s
        w0 = float(wav[0])
        start = int(round((100 * w0 - 1) / (1 - w0)))
        window = torch.from_numpy(ramp[start : start + 100])
        assert torch.allclose(wav, window / window.max(), atol=1e-5)
        starts.add(start)
    assert len(starts) > 1


def test_short_clips_are_repeated(tmp_path):
    ramp = ramp_wav(tmp_path / "short.wav", 30)
    data = make_dataset(manifest(tmp_path, {"s": {"wav": str(tmp_path / "short.wav"), "duration": 0.01}}), RATE, 100)
    wav = data[0]["wav"]
    assert wav.shape == (100,)
    assert torch.allclose(wav[:30], torch.from_numpy(ramp), atol=1e-6)
    assert torch.equal(wav[:30], wav[30:60]) and torch.equal(wav[:10], wav[90:])


def test_downmix_silence_and_resampling(tmp_path):
    # left = -right: the mono downmix is silence, which must come out as zeros, not NaN
    tone = np.sin(np.linspace(0, 200, 4000)).astype(np.float32)
    sf.write(tmp_path / "anti.wav", np.stack([tone, -tone], axis=1), RATE, subtype="FLOAT")
    sf.write(tmp_path / "zeros.wav", np.zeros(4000, dtype=np.float32), RATE)
    sf.write(tmp_path / "slow.wav", tone, 4000, subtype="FLOAT")  # 1 s at 4 kHz
    path = manifest(
        tmp_path,
        {k: {"wav": str(tmp_path / f"{k}.wav"), "duration": 0.5} for k in ("anti", "zeros", "slow")},
    )
    data = make_dataset(path, RATE, RATE)
    for index in (0, 1):
        wav = data[index]["wav"]
        assert torch.isfinite(wav).all() and float(wav.abs().max()) == 0.0
    assert load_audio(tmp_path / "slow.wav", RATE).shape == (8000,)  # resampled, not just relabelled
    assert torch.isfinite(data[2]["wav"]).all()


def test_caption_manifest_and_placeholders(tmp_path):
    entries = {
        "a_1": {"wav": "{data_root}/1-100032-A-0.wav", "duration": 5.0, "caption": "a dog {barks}"},
        "a_2": {"wav": "{data_root}/1-100032-A-0.wav", "duration": 5.0, "caption": "woof"},
    }
    path = manifest(tmp_path, entries)
    data = make_dataset(path, RATE, RATE, train=True, replacements={"data_root": str(SAMPLES / "ESC50" / "audio")})
    assert sorted(data[0]) == ["caption", "id", "wav"]
    assert data[0]["caption"] == "a dog {barks}" and data[0]["wav"].shape == (RATE,)
    with pytest.raises(DataPrepError, match="Could not read"):
        make_dataset(path, RATE, RATE)[0]  # placeholder left unfilled: the path does not exist


def test_labels_manifest_keeps_its_own_captions(tmp_path):
    csv = tmp_path / "l.csv"
    csv.write_text("filename,label\n1-100032-A-0.wav,dog\n")
    path = prepare_labels(csv, SAMPLES / "ESC50" / "audio", tmp_path, template="a {label} on a street")
    item = make_dataset(path, RATE, RATE)[0]
    assert item["caption"] == "a dog on a street" and item["label"] == 0 and item["class_string"] == "dog"


def test_bad_manifests(tmp_path):
    with pytest.raises(MissingDataError, match="run the data preparation"):
        make_dataset(tmp_path / "none.json", RATE, RATE)
    mixed = manifest(tmp_path, {"a": {"wav": "a.wav", "caption": "x"}, "b": {"wav": "b.wav"}})
    with pytest.raises(DataPrepError, match="Only 1 of 2"):
        make_dataset(mixed, RATE, RATE)
    conflict = {
        "a": {"wav": "a.wav", "class_string": "dog", "classID": 0},
        "b": {"wav": "b.wav", "class_string": "cat", "classID": 0},
    }
    with pytest.raises(DataPrepError, match="classID 0 names two classes"):
        class_names(conflict)


def test_fix_length_edge_cases():
    assert fix_length(torch.zeros(0), 4).tolist() == [0.0, 0.0, 0.0, 0.0]
    same = torch.arange(5.0)
    assert fix_length(same, 5) is same
