"""Synthetic scene generator: determinism, audio sanity, exact support masks and the dataset writer."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_lmaczs.clap.frontend import LogMelFrontend
from speechbrain_lmaczs.synthetic import (
    CLASS_LABELS,
    EVENT_CLASSES,
    SceneConfig,
    SpectrogramGrid,
    dominant_support,
    make_scene,
    prompt_for,
    render_event,
    support_masks,
    write_synthetic_dataset,
)

SR = 16000
# Short clips keep the suite fast; the properties tested do not depend on the clip length.
CONFIG = SceneConfig(sample_rate=SR, clip_seconds=2.0)
SINGLE = SceneConfig(sample_rate=SR, clip_seconds=2.0, n_events=(1, 1))


@pytest.fixture(scope="module")
def frontend():
    return LogMelFrontend(SR, 512, 160, 64, 20.0, 8000.0, clip_seconds=2.0)


@pytest.fixture(scope="module")
def mel_grid(frontend):
    return SpectrogramGrid.from_frontend(frontend, "mel")


def test_class_inventory():
    assert len(CLASS_LABELS) >= 10
    assert len(set(CLASS_LABELS)) == len(CLASS_LABELS)
    for cls in EVENT_CLASSES:
        assert 2 <= len(cls.captions) <= 3
        assert prompt_for(cls.label).endswith(cls.captions[0])
    with pytest.raises(ValueError, match="Unknown synthetic class"):
        prompt_for("trumpet")


def test_same_seed_same_scene_other_seed_other_scene(mel_grid):
    a = make_scene(3, 5, CONFIG, grid=mel_grid)
    b = make_scene(3, 5, CONFIG, grid=mel_grid)
    assert np.array_equal(a.waveform, b.waveform)
    assert np.array_equal(a.supports, b.supports)
    assert a.events == b.events and a.caption == b.caption
    for other in (make_scene(4, 5, CONFIG), make_scene(3, 5, CONFIG, split="test"), make_scene(3, 6, CONFIG)):
        assert not np.allclose(other.waveform, a.waveform)


@pytest.mark.parametrize("label", CLASS_LABELS)
def test_every_class_renders_finite_audible_audio_in_range(label):
    x = render_event(label, np.random.default_rng(0), 0.7, SR)
    assert np.all(np.isfinite(x))
    assert np.sqrt(np.mean(x**2)) == pytest.approx(1.0)

    scene = make_scene(0, 0, SINGLE, classes=[label])
    wav = scene.waveform
    assert wav.dtype == np.float32 and np.all(np.isfinite(wav))
    assert np.max(np.abs(wav)) <= 1.0
    event = scene.events[0]
    start, stop = round(event.onset * SR), round(event.offset * SR)
    assert 0.4 <= event.offset - event.onset <= 1.5
    # The recorded level is the event's true RMS over its span, and it is far above the noise floor.
    track = scene.event_waveforms[0, start:stop].astype(np.float64)
    assert 20 * np.log10(np.sqrt(np.mean(track**2))) == pytest.approx(event.level_db, abs=0.05)
    assert np.sqrt(np.mean(wav[start:stop].astype(np.float64) ** 2)) > 10 * np.sqrt(np.mean(scene.background**2))
    assert np.allclose(scene.event_waveforms.sum(0) + scene.background, wav, atol=1e-6)


def test_scene_caption_follows_onsets_and_first_class_is_balanced():
    for index in range(12):
        scene = make_scene(1, index, CONFIG)
        assert 1 <= len(scene.events) <= 3
        onsets = [e.onset for e in scene.events]
        assert onsets == sorted(onsets)
        assert scene.caption == " and ".join(e.caption for e in scene.events)
        classes = [e.class_index for e in scene.events]
        assert index % len(CLASS_LABELS) in classes
        assert len(set(classes)) == len(classes)


def test_dominant_support_definition():
    event = np.full((4, 3), 1.0)
    event[:, 2] = 1e-4  # 40 dB under the event's peak
    rest = np.zeros((4, 3))
    rest[2:, :] = 10.0  # another source dominates the last two frames
    support = dominant_support(event, rest, rel_db=-30.0)
    expected = np.zeros((4, 3), dtype=bool)
    expected[:2, :2] = True
    assert np.array_equal(support, expected)
    assert dominant_support(event, rest, rel_db=-50.0)[:2, 2].all()
    assert not dominant_support(np.zeros((2, 2)), np.zeros((2, 2))).any()


@pytest.mark.parametrize("label", CLASS_LABELS)
def test_single_event_support_holds_its_energy_and_is_small(label, frontend, mel_grid):
    for seed in range(2):
        scene = make_scene(seed, 0, SINGLE, classes=[label], grid=mel_grid)
        support = scene.supports[0]
        power = mel_grid.power(scene.event_waveforms)[0]
        assert (power * support).sum() >= 0.9 * power.sum()
        assert support.mean() < 0.25
        # Nothing outside the event's span (give or take one analysis window).
        frames = np.flatnonzero(support.any(1)) * frontend.hop_length / SR
        window = frontend.n_fft / SR
        event = scene.events[0]
        assert frames.min() >= event.onset - window and frames.max() <= event.offset + window


def test_tonal_supports_are_narrow_in_frequency(mel_grid):
    for label in ("beep", "tremolo tone", "warble"):
        support = make_scene(0, 0, SINGLE, classes=[label], grid=mel_grid).supports[0]
        assert support.any(0).sum() <= 10  # of 64 mel bands


def _overlapping_scene(classes, grid):
    """First scene (by index) whose two forced events overlap in time by at least 0.2 s."""
    for index in range(50):
        scene = make_scene(0, index, SceneConfig(sample_rate=SR, clip_seconds=2.0), classes=classes, grid=grid)
        a, b = scene.events
        if min(a.offset, b.offset) - max(a.onset, b.onset) >= 0.2:
            return scene
    raise AssertionError("no overlapping scene found")


@pytest.mark.parametrize("classes", [("hum", "beep"), ("rumble", "hiss"), ("tremolo tone", "warble")])
def test_supports_of_events_apart_in_frequency_barely_overlap(classes, mel_grid):
    scene = _overlapping_scene(classes, mel_grid)
    first, second = scene.supports
    assert first.any() and second.any()
    assert (first & second).sum() <= 0.02 * (first | second).sum()
    # Each event keeps most of its energy inside its own support despite the other one.
    power = mel_grid.power(scene.event_waveforms)
    for p, s in zip(power, scene.supports):
        assert (p * s).sum() >= 0.9 * p.sum()


def test_supports_of_a_mixture_are_almost_disjoint(mel_grid):
    for index in range(6):
        config = SceneConfig(sample_rate=SR, clip_seconds=2.0, n_events=(3, 3))
        supports = make_scene(2, index, config, grid=mel_grid).supports
        assert (supports.sum(0) > 1).sum() <= 0.02 * supports.any(0).sum()


def test_linear_grid_masks_have_stft_shape(frontend):
    scene = make_scene(0, 1, CONFIG)
    masks = support_masks(scene, SpectrogramGrid.from_frontend(frontend, "linear"))
    assert masks.shape == (len(scene.events), 1 + CONFIG.clip_samples // frontend.hop_length, 257)
    assert masks.any(axis=(1, 2)).all()


def test_explicit_stft_parameters_give_the_frontend_grid(frontend):
    scene = make_scene(0, 2, CONFIG)
    explicit = SpectrogramGrid.from_stft_params(SR, frontend.n_fft, frontend.hop_length, frontend.mel_fbank)
    assert np.array_equal(
        support_masks(scene, explicit), support_masks(scene, SpectrogramGrid.from_frontend(frontend, "mel"))
    )


def test_classes_are_distinguishable_by_their_mean_log_mel(frontend):
    """Leave-one-out nearest class mean on the event frames' mean log-mel spectrum, relative to its peak band
    (so that the random event level plays no part)."""
    features, targets = [], []
    for c in range(len(CLASS_LABELS)):
        for index in range(4):
            scene = make_scene(5, index, SINGLE, classes=[c])
            event = scene.events[0]
            logmel = frontend(torch.from_numpy(scene.waveform[None]))[0].numpy()
            hop = frontend.hop_length
            spectrum = logmel[int(event.onset * SR / hop) + 2 : int(event.offset * SR / hop) - 2].mean(0)
            features.append(spectrum - spectrum.max())
            targets.append(c)
    features, targets = np.stack(features), np.array(targets)
    correct = 0
    for i in range(len(targets)):
        keep = np.arange(len(targets)) != i
        means = np.stack([features[keep & (targets == c)].mean(0) for c in range(len(CLASS_LABELS))])
        correct += int(np.argmin(((means - features[i]) ** 2).sum(1)) == targets[i])
    assert correct / len(targets) >= 0.9


def test_scene_and_grid_rates_must_match():
    other = SpectrogramGrid.from_frontend(LogMelFrontend(22050, 512, 160, 40, 20.0, 8000.0, 2.0), "mel")
    with pytest.raises(ValueError, match="sample_rate"):
        support_masks(make_scene(0, 0, CONFIG), other)
    with pytest.raises(ValueError, match="too low"):
        SceneConfig(sample_rate=8000)


def test_writer_round_trip(tmp_path, frontend):
    manifest_path = write_synthetic_dataset(tmp_path, 3, 7, "valid", frontend, CONFIG)
    manifest = json.loads(manifest_path.read_text())
    assert sorted(manifest) == ["valid_00000", "valid_00001", "valid_00002"]
    n_frames = 1 + CONFIG.clip_samples // frontend.hop_length
    for index, (scene_id, entry) in enumerate(sorted(manifest.items())):
        scene = make_scene(7, index, CONFIG, split="valid")
        wav, sr = sf.read(entry["wav"], dtype="float32")
        assert sr == SR and entry["duration"] == pytest.approx(2.0)
        assert np.abs(wav - scene.waveform).max() < 1e-3  # 16-bit quantisation
        assert entry["caption"] == scene.caption
        assert entry["class_string"] == scene.events[0].label == CLASS_LABELS[entry["classID"]]
        assert [e["label"] for e in entry["events"]] == [e.label for e in scene.events]
        assert entry["events"][0]["prompt"] == prompt_for(entry["class_string"])
        with np.load(entry["support"]) as masks:
            assert masks["mel"].shape == (entry["n_events"], n_frames, frontend.n_mels)
            assert masks["linear"].shape == (entry["n_events"], n_frames, frontend.n_fft // 2 + 1)
            assert np.array_equal(masks["mel"], support_masks(scene, SpectrogramGrid.from_frontend(frontend, "mel")))
    assert not list(tmp_path.rglob("*.tmp"))


def test_writer_is_idempotent_and_rewrites_on_new_options(tmp_path, frontend):
    manifest_path = write_synthetic_dataset(tmp_path, 2, 0, "train", frontend, CONFIG)
    wav = tmp_path / "train" / "audio" / "train_00000.wav"
    stamps = (manifest_path.stat().st_mtime_ns, wav.stat().st_mtime_ns)
    assert write_synthetic_dataset(tmp_path, 2, 0, "train", frontend, CONFIG) == manifest_path
    assert (manifest_path.stat().st_mtime_ns, wav.stat().st_mtime_ns) == stamps

    write_synthetic_dataset(tmp_path, 3, 0, "train", frontend, CONFIG)
    assert len(json.loads(manifest_path.read_text())) == 3
