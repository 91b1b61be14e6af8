"""The small CLAP trainer: a seconds-long run on tiny scenes that saves, reloads, learns and is reused."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from speechbrain_lmaczs.clap import load_clap
from speechbrain_lmaczs.clap.frontend import LogMelFrontend
from speechbrain_lmaczs.synthetic.scene_sets import event_set_id, synthetic_logmels, zero_shot_accuracy
from speechbrain_lmaczs.synthetic.small_clap import (
    BACKGROUND_CAPTION,
    build_small_clap,
    caption_vocabulary,
    sample_caption,
)
from speechbrain_lmaczs.synthetic.small_clap_stages import (
    _locked_accuracy,
    _locked_features,
    carve_events,
    contrastive_loss,
    with_carved_copies,
)
from speechbrain_lmaczs.synthetic.small_clap_training import ACCURACY_NAME, OPTIONS_NAME, train_small_clap
from speechbrain_lmaczs.synthetic import CLASS_LABELS, EVENT_CLASSES, SceneConfig, prompt_for

# Short 16 kHz clips and a tiny model: the whole run takes seconds. One thread: on shared CI cores, the tiny
# model's small operations would otherwise spend most of their time synchronising threads.
TINY = {
    "n_train": 32,
    "tagging_epochs": 4,
    "epochs": 16,
    "batch_size": 8,
    "lr": 1e-2,
    "n_valid": 10,
    "n_eval": 20,
    "conv_channels": (4, 4, 8, 8, 16, 16),
    "embedding_dim": 16,
    "proj_dim": 16,
    "text_width": 16,
    "text_layers": 1,
    "num_threads": 1,
}


def tiny_frontend():
    return LogMelFrontend(16000, 512, 320, 32, 50.0, 8000.0, clip_seconds=2.0)


THREADS_BEFORE = torch.get_num_threads()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small_clap")
    return train_small_clap(folder, seed=0, frontend=tiny_frontend(), **TINY)


def test_contrastive_loss_known_values():
    emb = F.normalize(torch.randn(4, 8), dim=-1)
    scale = torch.tensor(10.0)
    # Every clip its own group: the plain CLIP loss, i.e. cross-entropy towards the diagonal both ways.
    logits = scale * emb @ emb.T
    diagonal = torch.arange(4)
    expected = 0.5 * (F.cross_entropy(logits, diagonal) + F.cross_entropy(logits.T, diagonal))
    assert torch.allclose(contrastive_loss(emb, emb, scale), expected)
    assert torch.allclose(contrastive_loss(emb, emb, scale, torch.arange(4)), expected)
    # Clips 0 and 1 share a group: swapping their texts must not change the loss, and does without groups.
    swapped = emb[[1, 0, 2, 3]]
    groups = torch.tensor([7, 7, 1, 2])
    assert torch.allclose(contrastive_loss(emb, swapped, scale, groups), contrastive_loss(emb, emb, scale, groups))
    assert not torch.allclose(contrastive_loss(emb, swapped, scale), contrastive_loss(emb, emb, scale))


def test_contrastive_loss_trains_the_temperature():
    log_scale = torch.tensor(math.log(5.0), requires_grad=True)
    emb = F.normalize(torch.eye(3), dim=-1)
    contrastive_loss(emb, emb, log_scale.exp()).backward()
    # Perfectly aligned pairs: a sharper temperature lowers the loss, so the gradient pushes the scale up.
    assert log_scale.grad < 0


def test_captions_cover_events_and_vocabulary():
    rng = np.random.default_rng(0)
    vocabulary = set(caption_vocabulary())
    tokenizer = build_small_clap(conv_channels=(2, 2, 2, 2, 2, 2), embedding_dim=4, proj_dim=4, text_width=16).tokenizer
    for classes in ([0], [3, 7], [9, 1, 4]):
        for _ in range(5):
            caption = sample_caption(classes, rng)
            assert caption.count(" and ") == len(classes) - 1
            assert all(any(v in caption for v in EVENT_CLASSES[c].captions) for c in classes)
            assert tokenizer.unk_token_id not in tokenizer(caption)["input_ids"]
    for label in CLASS_LABELS:
        assert tokenizer.unk_token_id not in tokenizer(prompt_for(label))["input_ids"]
    empty = sample_caption([], rng)
    assert BACKGROUND_CAPTION in empty and tokenizer.unk_token_id not in tokenizer(empty)["input_ids"]
    assert {"this", "sound", "and"} <= vocabulary
    assert event_set_id([4, 2]) == event_set_id([2, 4]) != event_set_id([2])


def test_scene_labels_are_the_first_drawn_event():
    fe = tiny_frontend()
    scenes = synthetic_logmels(fe, 12, 0, "train", SceneConfig(16000, 2.0, n_events=(1, 3)))
    assert scenes.logmels.shape == (12, fe.n_frames, fe.n_mels)
    assert scenes.labels.tolist() == [i % len(CLASS_LABELS) for i in range(12)]
    assert all(len(set(c)) == len(c) for c in scenes.classes)
    with pytest.raises(ValueError, match="do not match the front-end"):
        synthetic_logmels(fe, 2, 0, "train", SceneConfig(16000, 3.0))


def test_carving_silences_exactly_one_events_dilated_support_and_drops_its_class():
    fe = tiny_frontend()
    scenes = synthetic_logmels(fe, 12, 0, "train", SceneConfig(16000, 2.0, n_events=(1, 3)), occupancy=True)
    assert scenes.occupancy.shape == scenes.logmels.shape and scenes.occupancy.dtype == torch.int8
    for owner, classes in zip(scenes.occupancy, scenes.classes):
        assert set(owner.unique().tolist()) - {0} == {c + 1 for c in classes}  # every event has a support
    floor = fe.silence_db
    both = with_carved_copies(scenes, floor, torch.Generator().manual_seed(0))
    assert len(both) == 24 and torch.equal(both.logmels[:12], scenes.logmels)
    for i in range(12):
        gone = set(scenes.classes[i]) - set(both.classes[12 + i])
        assert len(gone) == 1 and set(both.classes[12 + i]) < set(scenes.classes[i])
        (cls,) = gone
        region = F.max_pool2d((scenes.occupancy[i] == cls + 1).float()[None, None], 3, 1, 1)[0, 0].bool()
        carved = both.logmels[12 + i]
        assert torch.all(carved[region] == floor)
        assert torch.equal(carved[~region], scenes.logmels[i][~region])
    # prob 0 changes nothing
    targets = torch.ones(12, len(CLASS_LABELS))
    same, kept = carve_events(scenes.logmels, targets, scenes.occupancy, 0.0, floor, torch.Generator())
    assert torch.equal(same, scenes.logmels) and torch.equal(kept, targets)


def test_tiny_run_saves_a_model_that_loads_back(tiny_run):
    clap = load_clap("msclap", str(tiny_run.folder))
    assert clap.frontend.config() == tiny_frontend().config()
    assert list(clap.hidden_channels) == [16, 16, 8, 8]
    wav = torch.from_numpy(np.stack([np.sin(np.arange(32000) * 0.3), np.zeros(32000)]).astype(np.float32))
    audio = clap.embed_waveform(wav)
    text = clap.encode_text([prompt_for(label) for label in CLASS_LABELS])
    assert audio.shape == (2, 16) and text.shape == (10, 16)
    assert torch.isfinite(audio).all() and torch.isfinite(text).all()
    assert tiny_run.log["parameters"] == sum(p.numel() for p in clap.parameters())


def test_tiny_run_losses_decrease(tiny_run):
    for stage, epochs in (("tagging", TINY["tagging_epochs"]), ("contrastive", TINY["epochs"])):
        losses = [entry["loss"] for entry in tiny_run.log[stage]]
        assert len(losses) == epochs and all(math.isfinite(x) for x in losses)
        assert losses[-1] < losses[0], stage
    assert tiny_run.log["joint"] == []
    assert torch.get_num_threads() == THREADS_BEFORE  # the run's num_threads=1 was undone


@pytest.fixture
def one_thread():
    # As in TINY: small operations on shared cores run many times faster on one thread.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_text_tower_learns_to_match_audio_embeddings(one_thread):
    # Fixed random "audio" embeddings, one per class: the contrastive loss between them and the captions of the
    # classes starts near chance (log 8) and must fall far below it as the text tower learns the captions.
    clap = build_small_clap(conv_channels=(2,) * 6, embedding_dim=4, proj_dim=16, text_width=32, text_layers=1)
    audio = F.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    optimizer = torch.optim.Adam(clap.caption_encoder.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(40):
        text = clap.encode_text([sample_caption([c], rng) for c in range(8)])
        loss = contrastive_loss(audio, text, torch.tensor(10.0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[0] > 0.8 * math.log(8) and np.mean(losses[-5:]) < 0.4 * math.log(8)


def test_accuracy_file_is_the_loaded_models_accuracy(tiny_run):
    lines = (tiny_run.folder / ACCURACY_NAME).read_text().strip().splitlines()
    accuracy = float(lines[-1])
    assert 0.0 <= accuracy <= 1.0 and accuracy == pytest.approx(tiny_run.accuracy, abs=1e-4)
    # Recomputed independently on the model read back from disk: the file holds that model's score.
    clap = load_clap("msclap", str(tiny_run.folder))
    test = synthetic_logmels(clap.frontend, TINY["n_eval"], 0, "test", SceneConfig(16000, 2.0, n_events=(1, 1)))
    assert zero_shot_accuracy(clap, test) == pytest.approx(accuracy, abs=1e-4)


def test_cached_feature_accuracy_matches_the_classifier(tiny_run):
    # The locked stage scores validation scenes from cached CNN14 embeddings; it must agree with the full path.
    clap = load_clap("msclap", str(tiny_run.folder))
    scenes = synthetic_logmels(clap.frontend, 30, 0, "valid", SceneConfig(16000, 2.0, n_events=(1, 1)))
    expected = zero_shot_accuracy(clap, scenes)
    assert _locked_accuracy(clap, _locked_features(clap, scenes.logmels), scenes.labels) == pytest.approx(expected)


def test_second_call_reuses_the_model_and_other_options_retrain(tiny_run, tmp_path):
    checkpoint = next(tiny_run.folder.glob("*.pth"))
    before = checkpoint.stat().st_mtime_ns
    again = train_small_clap(tiny_run.folder, seed=0, frontend=tiny_frontend(), **TINY)
    assert again.reused and again.accuracy == tiny_run.accuracy
    assert checkpoint.stat().st_mtime_ns == before

    options = json.loads((tiny_run.folder / OPTIONS_NAME).read_text())
    assert options["n_train"] == TINY["n_train"] and options["frontend"] == tiny_frontend().config()
    other = {**TINY, "tagging_epochs": 0, "epochs": 1, "joint_epochs": 1, "n_train": 16}
    retrained = train_small_clap(tmp_path, seed=0, frontend=tiny_frontend(), **other)
    assert not retrained.reused
    assert retrained.log["tagging"] == [] and len(retrained.log["joint"]) == 1
    assert math.isfinite(retrained.log["joint"][0]["loss"])
    # The same folder with other options is trained again, not reused.
    (tmp_path / OPTIONS_NAME).write_text(json.dumps({**json.loads((tmp_path / OPTIONS_NAME).read_text()), "seed": 1}))
    assert not train_small_clap(tmp_path, seed=0, frontend=tiny_frontend(), **other).reused


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at least 2 scenes"):
        train_small_clap(tmp_path, n_train=1, frontend=tiny_frontend())
