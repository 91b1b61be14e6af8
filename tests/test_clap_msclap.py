"""MS-CLAP 2022 backend: parity with the msclap package, checkpoint round trips, gradients and load errors."""

import argparse
import math

import pytest
import torch
import torch.nn.functional as F

from speechbrain_lmaczs.clap import CLAPLoadError, load_clap
from speechbrain_lmaczs.clap.msclap import CHECKPOINT_NAME, MSCLAP2022, build_word_tokenizer
from speechbrain_lmaczs.classifier import ZeroShotClassifier, make_prompts

SR = 44100
CLIP = 5 * SR
PROMPTS = make_prompts(["dog", "rain", "car_horn", "church_bells"])


def _clips(n_samples=CLIP, seed=0):
    """White noise, a 1 kHz tone over faint noise, and silence."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n_samples) / SR
    noise = torch.randn(2, n_samples, generator=g)
    tone = 0.5 * torch.sin(2 * math.pi * 1000 * t) + 1e-3 * noise[1]
    return torch.stack([0.1 * noise[0], tone, torch.zeros(n_samples)])


@torch.no_grad()
def _calibrate_batch_norms(cnn14, wav):
    """Running statistics of every BatchNorm of msclap's CNN14 from one batch, so that a random model depends
    on its input (with default statistics, the -40 dB log-mels make every embedding alike)."""
    logmel = cnn14.logmel_extractor(cnn14.spectrogram_extractor(wav))
    cnn14.bn0.running_mean.copy_(logmel.mean(dim=(0, 1, 2)))
    cnn14.bn0.running_var.copy_(logmel.var(dim=(0, 1, 2)))
    norms = [m for name, m in cnn14.named_modules() if name.startswith("conv_block") and "bn" in name]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    cnn14(wav)  # CNN14 itself stays in eval mode: no dropout
    cnn14.eval()


# ---------------------------------------------------------------- parity with msclap (full-size audio tower)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """msclap's own AudioEncoder (random) and TextEncoder (small BERT), saved in the released checkpoint format."""
    from msclap.models import clap as msclap_models
    from transformers import BertConfig, BertModel

    tokenizer = build_word_tokenizer("this is the sound of a dog rain car horn church bells".split())
    bert_config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=256,
        max_position_embeddings=128,
        initializer_range=0.5,  # BERT's 0.02 gives random models near-identical embeddings for all prompts
    )

    class SmallBert:
        """Stands in for AutoModel so that msclap's TextEncoder does not download bert-base-uncased."""

        @staticmethod
        def from_pretrained(name):
            return BertModel(bert_config)

    with torch.random.fork_rng(devices=[]), pytest.MonkeyPatch.context() as mp:
        torch.manual_seed(0)
        mp.setattr(msclap_models, "AutoModel", SmallBert)
        text = msclap_models.TextEncoder(1024, "bert-base-uncased", bert_config.hidden_size).eval()
        audio = msclap_models.AudioEncoder("Cnn14", 2048, 1024, SR, 1024, 320, 64, 50, 14000, 527).eval()
    _calibrate_batch_norms(audio.base, _clips(n_samples=SR, seed=1))  # 1 s clips: enough for statistics

    state = {"audio_encoder." + k: v for k, v in audio.state_dict().items()}
    state.update({"caption_encoder." + k: v for k, v in text.state_dict().items()})
    # Checkpoints written by transformers < 4.31 carry BERT's position ids: the loader must accept them.
    state["caption_encoder.base.embeddings.position_ids"] = torch.arange(128)[None]
    state["logit_scale"] = torch.tensor(math.log(1 / 0.07))
    folder = tmp_path_factory.mktemp("msclap_reference")
    torch.save({"model": state}, folder / CHECKPOINT_NAME)
    tokenizer.save_pretrained(folder)
    ours = load_clap("msclap", str(folder / CHECKPOINT_NAME))
    return {"audio": audio, "text": text, "ours": ours}


def test_checkpoint_format_is_the_released_one(reference):
    keys = set(reference["ours"].checkpoint_state_dict())
    assert "audio_encoder.base.conv_block6.bn2.running_var" in keys
    assert "audio_encoder.projection.layer_norm.weight" in keys
    assert "caption_encoder.base.encoder.layer.1.output.dense.weight" in keys
    assert "logit_scale" in keys
    assert not any("extractor" in k for k in keys)
    assert torch.allclose(reference["ours"].logit_scale, torch.tensor(1 / 0.07))


def test_frontend_matches_torchlibrosa(reference):
    base = reference["audio"].base
    wav = _clips()[:2]
    with torch.no_grad():
        expected = base.logmel_extractor(base.spectrogram_extractor(wav))[:, 0]
        got = reference["ours"].frontend(wav)
    assert got.shape == expected.shape == (2, 690, 64)
    diff = (got - expected).abs()
    # torchlibrosa's DFT kernel is float32: far below a clip's peak (the tone's quiet bands) its round-off shows.
    loud = got > got.amax(dim=(1, 2), keepdim=True) - 60
    assert diff[loud].max() < 1e-3
    assert diff.max() < 1e-2


@pytest.fixture(scope="module")
def audio_outputs(reference):
    """Both implementations on the same two 5 s clips (one full-size forward each, shared by the tests below)."""
    wav = _clips()[:2]
    ours = reference["ours"]
    with torch.no_grad():
        expected = F.normalize(reference["audio"](wav)[0], dim=-1)
        got, hidden = ours.encode_audio(ours.frontend(wav), return_hidden=True)
    return expected, got, hidden


def test_audio_embedding_matches_msclap(audio_outputs):
    expected, got, _ = audio_outputs
    assert got.shape == (2, 1024)
    assert (got - expected).abs().max() < 1e-4
    # the comparison means something only if the encoder tells the two clips apart
    assert F.cosine_similarity(got[0], got[1], dim=0) < 0.99


def test_text_embedding_matches_msclap(reference):
    ours = reference["ours"]
    with torch.no_grad():
        expected = F.normalize(reference["text"](ours.tokenize(PROMPTS)), dim=-1)
        got = ours.encode_text(PROMPTS)
    assert got.shape == (len(PROMPTS), 1024)
    assert (got - expected).abs().max() < 1e-5
    assert F.cosine_similarity(got[0], got[1], dim=0) < 0.99


def test_hidden_maps_of_released_architecture(reference, audio_outputs):
    hidden = audio_outputs[2]
    assert [tuple(h.shape) for h in hidden] == [(2, 2048, 21, 2), (2, 1024, 21, 2), (2, 512, 43, 4), (2, 256, 86, 8)]
    assert reference["ours"].hidden_channels == [2048, 1024, 512, 256]


# ---------------------------------------------------------------- tiny model


def test_tiny_embeddings_depend_on_input(tiny_msclap):
    with torch.no_grad():
        emb = tiny_msclap.embed_waveform(_clips())
    cos = emb @ emb.T
    assert cos[0, 1] < 0.99 and cos[0, 2] < 0.99 and cos[1, 2] < 0.99


def test_save_load_round_trip(tiny_msclap, tmp_path):
    tiny_msclap.save_pretrained(tmp_path)
    checkpoint = torch.load(tmp_path / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    assert "audio_encoder.base.bn0.running_mean" in checkpoint["model"]
    loaded = load_clap("msclap", str(tmp_path))
    logmel = tiny_msclap.frontend(_clips())
    with torch.no_grad():
        assert torch.equal(loaded.encode_audio(logmel), tiny_msclap.encode_audio(logmel))
        assert torch.equal(loaded.encode_text(PROMPTS), tiny_msclap.encode_text(PROMPTS))
    assert torch.equal(loaded.logit_scale, tiny_msclap.logit_scale)
    assert loaded.frontend.config() == tiny_msclap.frontend.config()


def test_bare_checkpoint_loads_with_inferred_architecture(tiny_msclap, tmp_path):
    tiny_msclap.save_pretrained(tmp_path)
    # A bare .pth does not say how many attention heads BERT has: the tiny one has 2.
    loaded = MSCLAP2022.from_pretrained(tmp_path / CHECKPOINT_NAME, text_config={"num_attention_heads": 2})
    logmel = tiny_msclap.frontend(_clips())
    with torch.no_grad():
        assert torch.equal(loaded.encode_audio(logmel), tiny_msclap.encode_audio(logmel))
        assert torch.allclose(loaded.encode_text(PROMPTS), tiny_msclap.encode_text(PROMPTS))


def test_build_tiny_is_seeded(tiny_msclap):
    a, b = MSCLAP2022.build_tiny(seed=3).state_dict(), MSCLAP2022.build_tiny(seed=3).state_dict()
    seed0 = tiny_msclap.state_dict()
    for key in ("audio_encoder.base.conv_block3.conv1.weight", "audio_encoder.base.conv_block6.bn2.running_var"):
        assert torch.equal(a[key], b[key])
        assert not torch.equal(a[key], seed0[key])


def test_zero_shot_logits_follow_the_audio(tiny_msclap):
    classifier = ZeroShotClassifier(tiny_msclap, PROMPTS)
    logmel = tiny_msclap.frontend(_clips())
    with torch.no_grad():
        logits = classifier(logmel)
    assert logits.shape == (3, len(PROMPTS))
    assert not torch.allclose(logits[0], logits[1], atol=1e-3)
    assert not torch.allclose(logits[1], logits[2], atol=1e-3)


def test_gradients_reach_a_mask_on_the_logmel(tiny_msclap):
    classifier = ZeroShotClassifier(tiny_msclap, PROMPTS)
    logmel = tiny_msclap.frontend(_clips()[:1])
    mask = torch.full_like(logmel, 0.5, requires_grad=True)
    classifier(logmel * mask)[0, 0].backward()
    assert mask.grad.shape == (1, 690, 64)
    assert torch.isfinite(mask.grad).all() and mask.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_msclap.parameters())


def test_cam_layer_carries_the_deepest_map(tiny_msclap):
    seen = []
    handle = tiny_msclap.cam_layer.register_forward_hook(lambda module, inputs, output: seen.append(output))
    try:
        logmel = tiny_msclap.frontend(_clips()[:2]).requires_grad_(True)
        emb, hidden = tiny_msclap.encode_audio(logmel, return_hidden=True)
    finally:
        handle.remove()
    assert len(seen) == 1 and seen[0] is hidden[0]
    assert [tuple(h.shape) for h in hidden] == [(2, 128, 21, 2), (2, 64, 21, 2), (2, 32, 43, 4), (2, 16, 86, 8)]
    assert tiny_msclap.hidden_channels == [128, 64, 32, 16]
    (grad,) = torch.autograd.grad(emb[:, 0].sum(), seen[0])
    assert grad.abs().sum() > 0


def test_encode_audio_rejects_wrong_layout(tiny_msclap):
    with pytest.raises(ValueError, match="time, 64"):
        tiny_msclap.encode_audio(torch.zeros(1, 64, 690))
    with pytest.raises(TypeError, match="list of strings"):
        tiny_msclap.encode_text("dog")


# ---------------------------------------------------------------- load errors


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """No network and an empty hub cache, whatever the machine's settings."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_hub_cache"))


def test_uncached_hub_id_offline_says_how_to_pass_a_path(offline_hub):
    with pytest.raises(CLAPLoadError, match="microsoft/msclap") as err:
        load_clap("msclap", "microsoft/msclap")
    assert "local path" in str(err.value)


def test_missing_tokenizer_offline_is_a_clear_error(offline_hub, tiny_msclap, tmp_path):
    tiny_msclap.save_pretrained(tmp_path)
    with pytest.raises(CLAPLoadError, match="tokenizer="):
        MSCLAP2022.from_pretrained(tmp_path / CHECKPOINT_NAME, tokenizer="nobody/no-such-tokenizer")


def test_missing_path_and_wrong_checkpoint(tiny_msclap, tmp_path):
    with pytest.raises(CLAPLoadError, match="No file or folder"):
        load_clap("msclap", str(tmp_path / "nowhere" / CHECKPOINT_NAME))
    with pytest.raises(CLAPLoadError, match="neither"):
        load_clap("msclap", str(tmp_path))
    state = tiny_msclap.checkpoint_state_dict()
    del state["audio_encoder.projection.linear2.weight"]
    torch.save({"model": state}, tmp_path / CHECKPOINT_NAME)
    with pytest.raises(CLAPLoadError, match="linear2"):
        MSCLAP2022.from_pretrained(tmp_path, tokenizer=tiny_msclap.tokenizer)


def test_checkpoint_with_pickled_objects_needs_explicit_trust(tiny_msclap, tmp_path):
    state = tiny_msclap.checkpoint_state_dict()
    torch.save({"model": state, "args": argparse.Namespace(lr=1e-3)}, tmp_path / CHECKPOINT_NAME)
    with pytest.raises(CLAPLoadError, match="weights_only=False"):
        MSCLAP2022.from_pretrained(tmp_path, tokenizer=tiny_msclap.tokenizer)
    loaded = MSCLAP2022.from_pretrained(
        tmp_path, tokenizer=tiny_msclap.tokenizer, text_config={"num_attention_heads": 2}, weights_only=False
    )
    assert torch.equal(loaded.logit_scale, tiny_msclap.logit_scale)
