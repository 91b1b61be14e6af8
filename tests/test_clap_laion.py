"""LAION CLAP backend: front-end and embedding parity with transformers, HTSAT unfolding, loading."""

import json
import os

import numpy as np
import pytest
import torch
from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

from speechbrain_lmaczs.clap import CLAPLoadError, load_clap
from speechbrain_lmaczs.clap.laion import LAIONCLAP, frontend_from_feature_extractor, unfold_htsat_map
from speechbrain_lmaczs.classifier import ZeroShotClassifier, make_prompts

PROMPTS = make_prompts(["dog", "rain", "car_horn"])


def _test_waveforms(sample_rate, n_samples, seed=0):
    """Noise, a 440 Hz tone and silence, (3, n_samples)."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(n_samples) / sample_rate
    noise = 0.1 * torch.randn(n_samples, generator=gen)
    tone = 0.3 * torch.sin(2 * torch.pi * 440.0 * t)
    return torch.stack([noise, tone, torch.zeros(n_samples)])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny LAION CLAP (seed 0) saved and loaded back through the loader users call."""
    return load_clap("laion", "tiny-random", savedir=str(tmp_path_factory.mktemp("tiny_laion")))


@pytest.fixture(scope="module")
def logmel(tiny):
    return tiny.frontend(_test_waveforms(tiny.sample_rate, tiny.clip_samples))


@pytest.mark.parametrize(
    "extractor_kwargs",
    [
        {"frequency_min": 50},  # the released LAION checkpoints
        {"sampling_rate": 32000, "hop_length": 320, "feature_size": 32, "frequency_min": 0, "frequency_max": 12000},
    ],
)
def test_frontend_matches_feature_extractor(extractor_kwargs):
    extractor = ClapFeatureExtractor(truncation="rand_trunc", padding="repeatpad", **extractor_kwargs)
    frontend = frontend_from_feature_extractor(extractor)
    sample_rate = extractor.sampling_rate
    n_samples = extractor.max_length_s * sample_rate
    t = torch.arange(n_samples) / sample_rate
    # Noise plus a rising chirp: energy in every band, and a clip of exactly 10 s (no padding, no crop).
    wav = 0.05 * torch.randn(n_samples, generator=torch.Generator().manual_seed(1))
    wav += 0.3 * torch.sin(2 * torch.pi * (100.0 + 400.0 * t) * t)
    expected = extractor(wav.numpy(), sampling_rate=sample_rate, return_tensors="np")["input_features"]
    ours = frontend(wav[None]).numpy()
    assert expected.shape == (1, 1, frontend.n_frames, extractor.feature_size)
    assert ours.shape == expected[:, 0].shape
    assert np.abs(ours - expected[:, 0]).max() < 1e-3


def test_real_front_end_shape(tiny):
    assert (tiny.sample_rate, tiny.clip_samples, tiny.frontend.n_frames) == (48000, 480000, 1001)
    assert (tiny.frontend.f_min, tiny.frontend.f_max, tiny.frontend.n_mels) == (50.0, 14000.0, 64)


def test_embeddings_match_transformers(tiny, logmel):
    ours = tiny.encode_audio(logmel)
    with torch.no_grad():
        expected = tiny.model.get_audio_features(input_features=logmel.unsqueeze(1)).pooler_output
        tokens = tiny.tokenizer(PROMPTS, padding=True, return_tensors="pt")
        expected_text = tiny.model.get_text_features(**tokens).pooler_output
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(tiny.encode_text(PROMPTS), expected_text, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(len(ours)))


def test_classifier_logits_are_clap_logits_per_audio(logmel):
    clap = LAIONCLAP.build_tiny(seed=3).freeze()
    # Different audio and text temperatures, so the test sees which one the backend uses.
    clap.model.logit_scale_a.data.fill_(np.log(20.0))
    clap.model.logit_scale_t.data.fill_(np.log(3.0))
    tokens = clap.tokenizer(PROMPTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = clap.model(**tokens, input_features=logmel.unsqueeze(1)).logits_per_audio
        logits = ZeroShotClassifier(clap, PROMPTS)(logmel)
    torch.testing.assert_close(clap.logit_scale, torch.tensor(20.0))
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_different_inputs_give_different_embeddings(tiny, logmel):
    with torch.no_grad():
        embeddings = tiny.encode_audio(logmel)
    cosines = embeddings @ embeddings.T
    off_diagonal = cosines[~torch.eye(3, dtype=torch.bool)]
    assert off_diagonal.max() < 0.99, cosines


def test_save_load_round_trip(tiny, logmel, tmp_path):
    built = LAIONCLAP.build_tiny(seed=0).freeze()
    built.save_pretrained(tmp_path)
    loaded = LAIONCLAP.from_pretrained(tmp_path).freeze()
    with open(tmp_path / "clap_config.json") as fin:
        assert json.load(fin)["backend"] == "laion"
    with torch.no_grad():
        for clap in (loaded, tiny):  # tiny went through load_clap("laion", "tiny-random") with seed 0
            assert torch.equal(clap.encode_audio(logmel), built.encode_audio(logmel))
            assert torch.equal(clap.encode_text(PROMPTS), built.encode_text(PROMPTS))
            assert torch.equal(clap.logit_scale, built.logit_scale)
        other_seed = LAIONCLAP.build_tiny(seed=1).freeze()
        assert not torch.allclose(other_seed.encode_audio(logmel), built.encode_audio(logmel))
    assert loaded.frontend.config() == built.frontend.config()


def test_zero_shot_logits_change_with_audio(tiny, logmel):
    classifier = ZeroShotClassifier(tiny, PROMPTS)
    with torch.no_grad():
        logits = classifier(logmel)
    assert logits.shape == (3, len(PROMPTS))
    assert (logits[0] - logits[1]).abs().max() > 1e-3
    assert (logits[1] - logits[2]).abs().max() > 1e-3


def test_gradients_reach_a_mask_on_the_logmel(tiny, logmel):
    classifier = ZeroShotClassifier(tiny, PROMPTS)
    noise_and_tone = logmel[:2]
    mask = torch.full(noise_and_tone.shape, 0.5, requires_grad=True)
    classifier(noise_and_tone * mask)[:, 0].sum().backward()
    assert mask.grad is not None and torch.isfinite(mask.grad).all()
    assert (mask.grad.abs().sum(dim=(1, 2)) > 0).all()
    assert all(p.grad is None for p in tiny.parameters())


@torch.no_grad()
def test_hidden_map_shapes(tiny, logmel):
    embedding, hidden = tiny.encode_audio(logmel, return_hidden=True)
    assert embedding.shape == (3, 8)
    # Deepest first: HTSAT's 4 stages at 1/4, 1/8, 1/16, 1/32 of the 1024 x 64 (time, mel) grid.
    assert [tuple(h.shape) for h in hidden] == [(3, 64, 32, 2), (3, 32, 64, 4), (3, 16, 128, 8), (3, 8, 256, 16)]
    assert tiny.hidden_channels == [h.shape[1] for h in hidden]
    torch.testing.assert_close(embedding, tiny.encode_audio(logmel))


def test_two_stage_model_returns_two_maps(logmel):
    # The tiny configuration of clap-backends.md (two stages).
    tiny = LAIONCLAP.build_tiny()
    config = tiny.model.config.to_dict()
    config["audio_config"].update(depths=[1, 1], num_attention_heads=[2, 2], hidden_size=16)
    config = ClapConfig(**config)
    clap = LAIONCLAP(ClapModel(config).eval(), tiny.tokenizer, tiny.feature_extractor).freeze()
    embedding, hidden = clap.encode_audio(logmel[:1], return_hidden=True)
    assert [tuple(h.shape[1:]) for h in hidden] == [(16, 128, 8), (8, 256, 16)]
    assert clap.hidden_channels == [16, 8]
    expected = clap.model.get_audio_features(input_features=logmel[:1].unsqueeze(1)).pooler_output
    torch.testing.assert_close(embedding, expected, atol=1e-6, rtol=1e-5)


def test_unfold_inverts_htsat_folding(tiny):
    # Every log-mel pixel holds its own (time, mel) coordinates: 1000 * time + mel.
    n_frames, n_mels = tiny.max_frames, tiny.frontend.n_mels
    time_index = torch.arange(n_frames, dtype=torch.float64)[:, None]
    mel_index = torch.arange(n_mels, dtype=torch.float64)[None, :]
    coordinates = (1000 * time_index + mel_index)[None, None]  # (1, 1, time, mel)
    image = tiny.audio_encoder.reshape_mel2img(coordinates)
    assert image.shape == (1, 1, 256, 256)
    # The folded image is not already (time, freq): the test would pass for an identity "unfold" otherwise.
    assert not torch.equal(image.reshape(1, 1, n_frames, n_mels), coordinates)
    torch.testing.assert_close(unfold_htsat_map(image, tiny.n_chunks), coordinates, rtol=0, atol=0)
    # Patch embedding and merging pool aligned 2 x 2 blocks: the coarser stage grids unfold to pooled coordinates.
    for stride in (4, 8, 16, 32):
        pooled_image = torch.nn.functional.avg_pool2d(image, stride)
        expected = torch.nn.functional.avg_pool2d(coordinates, stride)
        torch.testing.assert_close(unfold_htsat_map(pooled_image, tiny.n_chunks), expected, rtol=0, atol=1e-9)


def test_unfold_rejects_bad_shapes():
    with pytest.raises(ValueError, match="multiple"):
        unfold_htsat_map(torch.zeros(1, 2, 6, 4), n_chunks=4)
    with pytest.raises(ValueError, match="batch, channels"):
        unfold_htsat_map(torch.zeros(6, 4), n_chunks=2)


@torch.no_grad()
def test_deepest_map_is_the_unfolded_last_stage(tiny, logmel):
    _, hidden = tiny.encode_audio(logmel, return_hidden=True)
    outputs = tiny.audio_encoder(
        logmel.unsqueeze(1), output_hidden_states=True, output_hidden_states_before_downsampling=True
    )
    last_stage = outputs.hidden_states[-1]  # image layout, before the encoder's final LayerNorm
    normed = tiny.audio_encoder.norm(last_stage.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(hidden[0], unfold_htsat_map(normed, tiny.n_chunks))
    torch.testing.assert_close(hidden[1], unfold_htsat_map(outputs.hidden_states[-2], tiny.n_chunks))


def test_embedding_is_computed_from_the_cam_layer_output(tiny, logmel):
    captured = {}

    def keep_output(module, inputs, output):
        captured["map"] = output
        output.register_hook(lambda grad: captured.setdefault("grad", grad))

    handle = tiny.cam_layer.register_forward_hook(keep_output)
    try:
        x = logmel[:1].clone().requires_grad_(True)
        tiny.encode_audio(x)[0, 0].backward()
    finally:
        handle.remove()
    assert captured["map"].shape == (1, 64, 32, 2)
    assert captured["grad"].shape == captured["map"].shape and captured["grad"].abs().sum() > 0

    # Whatever cam_layer outputs is what the embedding is pooled from.
    def zero_first_channels(module, inputs, output):
        return output * (torch.arange(output.shape[1]) >= 8).view(1, -1, 1, 1)

    with torch.no_grad():
        before = tiny.encode_audio(logmel)
        handle = tiny.cam_layer.register_forward_hook(zero_first_channels)
        try:
            after = tiny.encode_audio(logmel)
        finally:
            handle.remove()
    assert (before - after).abs().max() > 1e-4


def test_input_errors(tiny, logmel):
    with pytest.raises(ValueError, match="mel bands"):
        tiny.encode_audio(logmel[..., :32])
    with pytest.raises(ValueError, match="at most 1024"):
        tiny.encode_audio(torch.zeros(1, 1100, 64))
    with pytest.raises(ValueError, match="batch, time, mel"):
        tiny.encode_audio(logmel.unsqueeze(1))
    with pytest.raises(TypeError, match="list of strings"):
        tiny.encode_text("this is the sound of dog")


def test_fused_checkpoints_are_refused():
    tiny = LAIONCLAP.build_tiny()
    config = tiny.model.config.to_dict()
    config["audio_config"]["enable_fusion"] = True
    config["audio_config"]["fusion_type"] = "aff_2d"
    with pytest.raises(ValueError, match="unfused"):
        LAIONCLAP(ClapModel(ClapConfig(**config)), tiny.tokenizer, tiny.feature_extractor)


def test_offline_hub_id_raises_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CLAPLoadError, match="laion/clap-htsat-unfused") as info:
        # An empty cache folder: the id cannot be in it, whatever this machine has cached.
        LAIONCLAP.from_pretrained("laion/clap-htsat-unfused", cache_dir=str(tmp_path / "hf_cache"))
    message = str(info.value)
    assert "offline" in message and "--local-dir" in message and "folder" in message


def test_missing_or_incomplete_folder_raises_clear_error(tmp_path):
    with pytest.raises(CLAPLoadError, match="does not exist"):
        LAIONCLAP.from_pretrained(str(tmp_path / "no_such_folder"))
    with pytest.raises(CLAPLoadError, match="save_pretrained"):
        LAIONCLAP.from_pretrained(str(tmp_path))


def test_folder_without_feature_extractor_uses_released_front_end(tmp_path):
    LAIONCLAP.build_tiny().save_pretrained(tmp_path)
    os.remove(tmp_path / "preprocessor_config.json")
    clap = LAIONCLAP.from_pretrained(tmp_path)
    assert clap.frontend.config() == LAIONCLAP.build_tiny().frontend.config()
