"""The inference interface: Explainer.from_folder(...).explain_file(...) on the briefly trained Mel run."""

import re

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_lmaczs.data.pipeline import fix_length, peak_normalize
from speechbrain_lmaczs.explain import Explainer, ExplainError, read_recording

DOG = "1-100032-A-0.wav"
HORN = "2-100648-A-43.wav"
RATE = 44100  # the tiny msclap CLAP's rate; its window is 5 s, its hop 320 samples


@pytest.fixture(scope="module")
def explainer(trained_mel_run):
    return Explainer.from_folder(trained_mel_run)


@pytest.fixture(scope="module")
def long_clip(samples_dir, tmp_path_factory):
    """A 12-s mono file at the encoder's rate: windows start at 0, 5 and 7 s."""
    audio = samples_dir / "ESC50" / "audio"
    wav = np.concatenate([sf.read(audio / name, dtype="float32")[0] for name in (DOG, HORN, DOG)])
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, wav[: 12 * RATE], RATE, subtype="FLOAT")
    return path


def _direct_masks(explainer, wav, start, prompts):
    """The decoder's masks of one peak-normalised window, computed without the explainer."""
    model = explainer.model
    window = model.clap.clip_samples
    x = model.domain.representation(peak_normalize(fix_length(wav[start : start + window], window))[None])
    interpreter = model.interpreter(model.classifier(prompts))
    return interpreter.explain(x.repeat(len(prompts), 1, 1), torch.arange(len(prompts)))


def test_top_k_of_the_run_labels(explainer, samples_dir):
    assert explainer.labels == ["dog", "thunderstorm", "car_horn"]  # the run's manifest, ordered by classID
    result = explainer.explain_file(samples_dir / "ESC50" / "audio" / DOG, top_k=2)
    assert result.candidates == ["this is the sound of dog", "this is the sound of thunderstorm",
                                 "this is the sound of car horn"]
    assert torch.isclose(result.probabilities.sum(), torch.tensor(1.0))
    top = torch.argsort(result.probabilities, descending=True)[:2].tolist()
    assert [e.prompt for e in result.explanations] == [result.candidates[i] for i in top]
    assert [e.probability for e in result.explanations] == pytest.approx(result.probabilities[top].tolist())
    for explanation in result.explanations:
        assert explanation.mask.shape == result.spectrogram.shape == (1 + 5 * RATE // 320, 64)
        assert 0.0 <= explanation.mask.min() and explanation.mask.max() <= 1.0
        assert explanation.waveform.shape == result.waveform.shape == (5 * RATE,)
        # The mask only removes energy from the original STFT.
        energy = explanation.waveform.pow(2).sum()
        assert 0 < energy <= result.waveform.pow(2).sum() * 1.01


def test_prompts_are_scored_among_themselves(explainer, samples_dir):
    result = explainer.explain_file(samples_dir / "ESC50" / "audio" / HORN, prompts=["a car horn", "rain", "rain "])
    assert result.candidates == ["a car horn", "rain"]  # stripped, duplicates dropped, order kept
    assert [e.prompt for e in result.explanations] == ["a car horn", "rain"]
    assert sum(e.probability for e in result.explanations) == pytest.approx(1.0)
    # The masks are the decoder's for those prompts.
    wav, _ = read_recording(samples_dir / "ESC50" / "audio" / HORN)
    direct = _direct_masks(explainer, wav, 0, ["a car horn", "rain"])
    for row, explanation in enumerate(result.explanations):
        torch.testing.assert_close(explanation.mask, direct[row], atol=1e-5, rtol=0)
    assert not torch.allclose(result.explanations[0].mask, result.explanations[1].mask)


def test_long_file_is_explained_window_by_window_and_stitched(explainer, long_clip):
    result = explainer.explain_file(long_clip, prompts=["dog", "car horn"])
    wav, _ = read_recording(long_clip)
    assert result.n_windows == 3
    n_frames = 1 + 12 * RATE // 320
    assert result.spectrogram.shape[0] == n_frames
    for explanation in result.explanations:
        assert explanation.waveform.shape == (12 * RATE,)
        assert explanation.mask.shape == (n_frames, 64)
    first = _direct_masks(explainer, wav, 0, ["dog", "car horn"])
    last = _direct_masks(explainer, wav, 7 * RATE, ["dog", "car horn"])
    for row, explanation in enumerate(result.explanations):
        # Frames before 5 s come from the first window, frame for frame.
        torch.testing.assert_close(explanation.mask[:690], first[row], atol=1e-5, rtol=0)
        # Frames after 8.5 s come from the last window (starting at 7 s = frame 964.6875 of the file): the file's
        # frames 1554..1653 are its frames 589..688.
        torch.testing.assert_close(explanation.mask[1554:], last[row, 589:689], atol=1e-5, rtol=0)


def test_short_input_is_padded_for_the_model_and_cropped_back(explainer, samples_dir, tmp_path):
    wav, _ = read_recording(samples_dir / "ESC50" / "audio" / HORN)
    path = tmp_path / "short.wav"
    sf.write(path, wav[: RATE].numpy(), RATE, subtype="FLOAT")  # 1 s, a fifth of the window
    result = explainer.explain_file(path, prompts=["a car horn"])
    (explanation,) = result.explanations
    assert result.n_windows == 1
    assert explanation.probability == pytest.approx(1.0)  # one prompt: scored among itself
    assert explanation.waveform.shape == (RATE,)
    assert explanation.mask.shape == result.spectrogram.shape == (1 + RATE // 320, 64)
    # The model saw the clip repeated to fill its window; the mask is that window's, cropped to the clip.
    direct = _direct_masks(explainer, wav[:RATE], 0, ["a car horn"])
    torch.testing.assert_close(explanation.mask, direct[0, : 1 + RATE // 320], atol=1e-5, rtol=0)


@pytest.mark.parametrize("suffix,rate", [(".flac", 22050), (".ogg", 16000)])
def test_stereo_file_at_another_rate(explainer, samples_dir, tmp_path, suffix, rate):
    import torchaudio

    mono, _ = read_recording(samples_dir / "ESC50" / "audio" / DOG)
    mono = torchaudio.functional.resample(mono, RATE, rate)
    stereo = torch.stack([mono, 0.25 * mono], dim=1).numpy()
    path = tmp_path / f"stereo{suffix}"
    sf.write(path, stereo, rate)
    result = explainer.explain_file(path, prompts=["dog", "rain"])
    frames = sf.info(str(path)).frames
    assert result.sample_rate == rate and result.waveform.shape == (frames,)
    # Channels are averaged: the result is that of the mono downmix.
    channels = torch.from_numpy(sf.read(path, dtype="float32")[0])
    downmix = explainer.explain_waveform(channels.mean(dim=1), rate, prompts=["dog", "rain"])
    for a, b in zip(result.explanations, downmix.explanations):
        assert a.waveform.shape == (frames,)
        torch.testing.assert_close(a.waveform, b.waveform)
        assert a.waveform.abs().max() > 0


def test_baseline_methods_use_the_same_classifier(explainer, samples_dir):
    path = samples_dir / "ESC50" / "audio" / DOG
    ours = explainer.explain_file(path, prompts=["dog", "rain"])
    gradcam = explainer.with_method("gradcam").explain_file(path, prompts=["dog", "rain"])
    assert gradcam.method == "gradcam" and all(e.method == "gradcam" for e in gradcam.explanations)
    # Same classifier: same probabilities; another interpreter: other masks.
    torch.testing.assert_close(gradcam.probabilities, ours.probabilities)
    for a, b in zip(gradcam.explanations, ours.explanations):
        assert a.mask.shape == b.mask.shape and 0 <= a.mask.min() and a.mask.max() <= 1
        assert not torch.allclose(a.mask, b.mask)
        assert a.waveform.shape == b.waveform.shape


def _write_bad(kind, folder):
    path = folder / f"{kind}.wav"
    if kind == "missing":
        return folder / "nothing_here.wav"
    if kind == "folder":
        path.mkdir()
    elif kind == "not_audio":
        path.write_text("this is not audio\n")
    elif kind == "empty_file":
        path.write_bytes(b"")
    elif kind == "zero_length":
        sf.write(path, np.zeros((0, 1), dtype="float32"), 16000)
    elif kind == "nan":
        sf.write(path, np.array([0.1, np.nan, 0.2, np.inf], dtype="float32"), 16000, subtype="FLOAT")
    elif kind == "silence":
        sf.write(path, np.zeros(16000, dtype="float32"), 16000)
    return path


BAD_INPUTS = {
    "missing": "no such file",
    "folder": "is a folder",
    "not_audio": "is not an audio file",
    "empty_file": "is not an audio file",
    "zero_length": "holds no audio samples",
    "nan": "2 NaN or infinite samples (the first at 0.000 s)",
    "silence": "digital silence",
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_recordings_are_refused_with_a_clear_message(tmp_path, kind):
    with pytest.raises(ExplainError, match=re.escape(BAD_INPUTS[kind])):
        read_recording(_write_bad(kind, tmp_path))


def test_bad_arguments(explainer, samples_dir, tmp_path):
    path = samples_dir / "ESC50" / "audio" / DOG
    for prompts in ([""], ["  "], [], [3]):
        with pytest.raises(ExplainError, match="prompt"):
            explainer.explain_file(path, prompts=prompts)
    with pytest.raises(ExplainError, match="top_k"):
        explainer.explain_file(path, top_k=0)
    with pytest.raises(ExplainError, match=re.escape("Unknown method 'gradcam+'")):
        explainer.with_method("gradcam+")
    no_labels = Explainer.from_model(explainer.model)
    with pytest.raises(ExplainError, match="no label set"):
        no_labels.explain_file(path)
    with pytest.raises(ExplainError, match="not a training output folder"):
        Explainer.from_folder(tmp_path)
    with pytest.raises(ExplainError, match="does not exist"):
        Explainer.from_folder(tmp_path / "missing")
    (tmp_path / "hyperparams.yaml").write_text("seed: 1\n")
    with pytest.raises(ExplainError, match="not an LMAC-ZS training output"):
        Explainer.from_folder(tmp_path)


def test_stft_domain_explanations_keep_the_input_length(tiny_msclap, samples_dir, tmp_path):
    """The STFT domain listens at 16 kHz: its explanations come back at the file's rate and length all the same."""
    from speechbrain_lmaczs.lmaczs.decoder import MaskDecoder
    from speechbrain_lmaczs.lmaczs.domains import STFTMasking
    from speechbrain_lmaczs.lmaczs.pretrained import TrainedLMACZS

    torch.manual_seed(0)
    decoder = MaskDecoder(tiny_msclap.hidden_channels, tiny_msclap.joint_dim, width=32)  # untrained is enough
    model = TrainedLMACZS(tiny_msclap, decoder, STFTMasking(tiny_msclap.frontend))
    explainer = Explainer.from_model(model, labels=["dog"])
    wav, _ = read_recording(samples_dir / "ESC50" / "audio" / DOG)
    path = tmp_path / "seven_seconds.wav"
    sf.write(path, np.concatenate([wav.numpy(), wav.numpy()])[: 7 * RATE : 2], RATE // 2)  # 7 s at 22.05 kHz
    result = explainer.explain_file(path)
    (explanation,) = result.explanations
    assert explanation.prompt == "this is the sound of dog" and explanation.probability == pytest.approx(1.0)
    assert result.n_windows == 2 and result.frequency_scale == "linear"
    hop = round(320 * 16000 / RATE)  # the encoder's hop, in time, at 16 kHz: 116 samples
    assert result.frequencies[-1] == 8000.0 and result.spectrogram.shape == (1 + 7 * 16000 // hop, 257)
    assert explanation.mask.shape == result.spectrogram.shape
    assert explanation.waveform.shape == (7 * RATE // 2,) and explanation.waveform.abs().max() > 0
