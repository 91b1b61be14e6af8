"""The training stages of the small CLAP: event tagging (with carving), then contrastive training.

See :mod:`speechbrain_lmaczs.synthetic.small_clap_training` for why the stages are what they are.
"""

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from speechbrain_lmaczs.classifier import ZeroShotClassifier
from speechbrain_lmaczs.clap import l2_normalize
from speechbrain_lmaczs.clap.base import cumulative_batch_norm_statistics
from speechbrain_lmaczs.synthetic.events import CLASS_LABELS, prompt_for
from speechbrain_lmaczs.synthetic.scene_sets import SceneSet, zero_shot_accuracy
from speechbrain_lmaczs.synthetic.small_clap import sample_caption

logger = logging.getLogger(__name__)

# Training clips over which the BatchNorm statistics of the locked audio tower are measured.
_BATCH_NORM_CLIPS = 256

# CLAP clips its temperature at 100: beyond that the loss can shrink by scaling alone and training turns unstable.
_MAX_LOGIT_SCALE = 100.0


def contrastive_loss(audio, text, logit_scale, groups=None):
    """Symmetric InfoNCE between the audio and text embeddings of a batch, as CLAP is trained.

    Row ``i`` of ``audio`` and of ``text`` describe the same clip. With ``groups``, clips of the same group (the
    same set of events) are all positives of one another, shared evenly: in a batch of synthetic scenes the same
    event set recurs, and pushing apart two clips of one caption would teach the model noise.

    Parameters
    ----------
    audio, text : torch.Tensor
        (batch, dim) L2-normalised embeddings.
    logit_scale : torch.Tensor
        0-d temperature multiplying the cosines (exponentiated, as :attr:`CLAPBackend.logit_scale`).
    groups : torch.Tensor, optional
        (batch,) integer group ids; None makes every clip its own group (plain CLIP/CLAP loss).

    Returns
    -------
    torch.Tensor
        0-d loss: the mean of the audio-to-text and text-to-audio cross-entropies.

    Example
    -------
    >>> a = F.normalize(torch.eye(3), dim=-1)
    >>> float(contrastive_loss(a, a, torch.tensor(50.0))) < 1e-6
    True
    >>> float(contrastive_loss(a, a.flip(0), torch.tensor(50.0))) > 10
    True
    """
    logits = logit_scale * audio @ text.T
    if groups is None:
        targets = torch.eye(len(audio), device=audio.device, dtype=audio.dtype)
    else:
        same = (groups[:, None] == groups[None, :]).to(audio.dtype)
        targets = same / same.sum(dim=1, keepdim=True)
    # The group relation is symmetric, so the text-to-audio targets are the same matrix.
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))



def _batches(n, batch_size, generator):
    # The last incomplete batch is dropped: BatchNorm and the contrastive loss both need several clips per batch.
    order = torch.randperm(n, generator=generator)
    size = min(batch_size, n)
    return [order[i * size : (i + 1) * size] for i in range(_n_batches(n, batch_size))]


def _n_batches(n, batch_size):
    return n // min(batch_size, n)



def _train_batch_norms_only(model):
    # BatchNorms learn the statistics of the training log-mels (batch statistics, running averages updated);
    # dropout stays off: CNN14's 0.5 dropouts slow a few hundred steps far more than they regularise them, and
    # every epoch's captions are new anyway.
    model.eval()
    for module in model.audio_encoder.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.train()


def _schedule(optimizer, total_steps):
    # Linear warm-up over the first 5 % (Adam's first steps on fresh weights are erratic), then cosine decay to 0.
    warmup = max(1, total_steps // 20)

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def _tagging_accuracy(model, scenes, batch_size=64):
    """How often ``fc_audioset``'s top class is the class of a single-event scene."""
    model.eval()
    base = model.audio_encoder.base
    correct = 0
    for start in range(0, len(scenes), batch_size):
        logits = base.fc_audioset(_clip_features(model, scenes.logmels[start : start + batch_size]))
        correct += int((logits.argmax(-1) == scenes.labels[start : start + batch_size]).sum())
    return correct / len(scenes)


def _clip_features(model, logmels):
    """CNN14's clip embedding (``fc1`` output): the input of both ``fc_audioset`` and the audio projection."""
    base = model.audio_encoder.base
    return base.embed(model.cam_layer(base.conv_maps(logmels.unsqueeze(1))[-1]))


@torch.no_grad()
def _recompute_batch_norm_statistics(model, logmels, batch_size):
    """Set the audio tower's BatchNorm running statistics to their plain average over ``logmels`` (in batches).

    The running averages of training lag behind the weights (momentum 0.1), so after a short or no tagging stage
    the eval-mode statistics would not match the network, and every clip would get about the same embedding.
    """
    norms = [m for m in model.audio_encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    model.eval()
    with cumulative_batch_norm_statistics(norms):
        for start in range(0, len(logmels), batch_size):
            _clip_features(model, logmels[start : start + batch_size])


def carve_events(logmels, targets, occupancy, prob, floor_db, generator):
    """Silence one event of some scenes and drop its tag: the augmentation that keeps a CNN from reading an event
    off the silent hole that removing it leaves.

    A CNN trained only on whole events also recognises the hole, of the event's exact shape, that zeroing its bins
    leaves in the background (measured on the small CLAP: 88 % of single-event scenes were still classified as their
    event with the event's support silenced). Masking explanations remove evidence by silencing bins, so such a
    classifier cannot tell them that an event mattered. Here each scene, with probability ``prob``, loses one of its
    events (chosen uniformly): its support, dilated by one bin, is set to ``floor_db`` (the front-end's silence)
    and its class leaves the targets.

    Parameters
    ----------
    logmels : torch.Tensor
        (batch, time, mels) log-mels (a modified copy is returned).
    targets : torch.Tensor
        (batch, classes) multi-hot tags (a modified copy is returned).
    occupancy : torch.Tensor
        (batch, time, mels) int8, see :attr:`SceneSet.occupancy`.
    prob : float
        Share of scenes carved.
    floor_db : float
        Value of a silent bin.
    generator : torch.Generator

    Returns
    -------
    tuple of torch.Tensor
        The carved log-mels and targets.

    Example
    -------
    >>> occ = torch.zeros(1, 6, 4, dtype=torch.int8); occ[0, 2:4, 1] = 3  # an event of class 2
    >>> x, t = carve_events(torch.ones(1, 6, 4), torch.tensor([[0.0, 0.0, 1.0]]), occ, 1.0, 0.0, torch.Generator())
    >>> t.tolist(), x[0, :, 1].tolist(), x[0, :, 3].tolist()  # support rows 2-3 of band 1, dilated by one bin
    ([[0.0, 0.0, 0.0]], [1.0, 0.0, 0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    """
    logmels, targets = logmels.clone(), targets.clone()
    chosen = torch.rand(len(logmels), generator=generator) < prob
    for row in torch.nonzero(chosen).flatten().tolist():
        present = torch.nonzero(targets[row]).flatten()
        if len(present) == 0:
            continue
        cls = int(present[torch.randint(len(present), (1,), generator=generator)])
        region = (occupancy[row] == cls + 1).float()[None, None]
        region = F.max_pool2d(region, 3, stride=1, padding=1)[0, 0].bool()
        logmels[row][region] = floor_db
        targets[row, cls] = 0.0
    return logmels, targets


def with_carved_copies(scenes, floor_db, generator):
    """``scenes`` followed by a copy of each with one event silenced (:func:`carve_events`) and its class removed."""
    n_classes = len(CLASS_LABELS)
    targets = torch.zeros(len(scenes), n_classes)
    for row, classes in enumerate(scenes.classes):
        targets[row, classes] = 1.0
    logmels, kept = carve_events(scenes.logmels, targets, scenes.occupancy, 1.0, floor_db, generator)
    classes = [[c for c in row if kept[i, c] > 0] for i, row in enumerate(scenes.classes)]
    return SceneSet(torch.cat([scenes.logmels, logmels]), scenes.classes + classes)


def train_tagging(model, train, valid, epochs, batch_size, lr, generator, carve_prob=0.0):
    """Stage 1: CNN14 and ``fc_audioset`` tag the classes present in each scene (multi-label, binary
    cross-entropy), with :func:`carve_events` when ``carve_prob`` > 0.

    Parameters
    ----------
    model : MSCLAP2022
        Trained in place (CNN14 and its AudioSet head only).
    train, valid : SceneSet
        Training scenes (with ``occupancy`` when carving) and single-event validation scenes.
    epochs, batch_size : int
    lr : float
        Peak Adam learning rate (warm-up, then cosine decay).
    generator : torch.Generator
        Order of the batches and the carving draws.
    carve_prob : float
        Share of the scenes of each batch that lose one event.

    Returns
    -------
    list of dict
        One log entry per epoch (loss, valid tagging accuracy).
    """
    if epochs == 0:
        return []
    base = model.audio_encoder.base
    targets = torch.zeros(len(train), base.fc_audioset.out_features)
    for row, classes in enumerate(train.classes):
        targets[row, classes] = 1.0
    floor_db = model.frontend.silence_db
    optimizer = torch.optim.Adam(base.parameters(), lr=lr)
    scheduler = _schedule(optimizer, epochs * _n_batches(len(train), batch_size))
    history = []
    for epoch in range(1, epochs + 1):
        _train_batch_norms_only(model)
        losses = []
        batches = _batches(len(train), batch_size, generator)
        for idx in tqdm(batches, desc=f"small CLAP tagging {epoch}/{epochs}", dynamic_ncols=True, leave=False):
            logmels, batch_targets = train.logmels[idx], targets[idx]
            if carve_prob > 0:
                logmels, batch_targets = carve_events(
                    logmels, batch_targets, train.occupancy[idx], carve_prob, floor_db, generator
                )
            logits = base.fc_audioset(_clip_features(model, logmels))
            loss = F.binary_cross_entropy_with_logits(logits, batch_targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        entry = {"epoch": epoch, "loss": float(np.mean(losses))}
        entry["valid_accuracy"] = _tagging_accuracy(model, valid)
        history.append(entry)
        logger.info(
            "Small CLAP tagging epoch %d/%d: loss %.4f, valid tagging accuracy %.3f",
            epoch,
            epochs,
            entry["loss"],
            entry["valid_accuracy"],
        )
    return history


@torch.no_grad()
def _locked_features(model, logmels, batch_size=64):
    """Clip embeddings of a locked (eval-mode) CNN14, computed once for all the epochs that reuse them."""
    model.eval()
    return torch.cat([_clip_features(model, logmels[i : i + batch_size]) for i in range(0, len(logmels), batch_size)])


@torch.no_grad()
def _locked_accuracy(model, features, labels):
    """:func:`zero_shot_accuracy` from cached CNN14 embeddings (same numbers, without running CNN14 again)."""
    model.eval()
    classifier = ZeroShotClassifier(model, [prompt_for(label) for label in CLASS_LABELS])
    logits = classifier.logits_from_embedding(l2_normalize(model.audio_encoder.projection(features)))
    return float((logits.argmax(-1) == labels).float().mean())


def train_contrastive(model, train, valid, epochs, batch_size, lr, generator, rng, locked):
    """Stages 2 (``locked``: CNN14 fixed) and 3 (everything trained): symmetric InfoNCE between scenes and freshly
    drawn captions (:func:`contrastive_loss`, clips of one event set as shared positives).

    Parameters
    ----------
    model : MSCLAP2022
        Trained in place.
    train, valid : SceneSet
        Training scenes and single-event validation scenes.
    epochs, batch_size : int
    lr : float
        Peak Adam learning rate (warm-up, then cosine decay).
    generator : torch.Generator
        Order of the batches.
    rng : numpy.random.Generator
        Draws the captions (:func:`sample_caption`).
    locked : bool
        Keep CNN14 fixed (its clip embeddings are then computed once).

    Returns
    -------
    list of dict
        One log entry per epoch (loss, logit scale, zero-shot valid accuracy).
    """
    if epochs == 0:
        return []
    stage = "contrastive (audio locked)" if locked else "contrastive (joint)"
    if locked:
        # CNN14 is fixed in eval mode, so its clip embeddings are computed once; an epoch then costs little more
        # than the text tower.
        _recompute_batch_norm_statistics(model, train.logmels[:_BATCH_NORM_CLIPS], batch_size)
        features, valid_features = _locked_features(model, train.logmels), _locked_features(model, valid.logmels)
        params = [*model.audio_encoder.projection.parameters(), *model.caption_encoder.parameters()]
        params.append(model.log_logit_scale)
    else:
        params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    scheduler = _schedule(optimizer, epochs * _n_batches(len(train), batch_size))
    groups = train.groups
    history = []
    for epoch in range(1, epochs + 1):
        if locked:
            model.eval()
        else:
            _train_batch_norms_only(model)
        losses = []
        batches = _batches(len(train), batch_size, generator)
        for idx in tqdm(batches, desc=f"small CLAP {stage} {epoch}/{epochs}", dynamic_ncols=True, leave=False):
            if locked:
                audio = l2_normalize(model.audio_encoder.projection(features[idx]))
            else:
                audio = model.encode_audio(train.logmels[idx])
            text = model.encode_text([sample_caption(train.classes[i], rng) for i in idx.tolist()])
            loss = contrastive_loss(audio, text, model.logit_scale, groups[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                model.log_logit_scale.clamp_(max=math.log(_MAX_LOGIT_SCALE))
            losses.append(float(loss.detach()))
        if locked:
            accuracy = _locked_accuracy(model, valid_features, valid.labels)
        else:
            accuracy = zero_shot_accuracy(model, valid)
        entry = {
            "epoch": epoch,
            "loss": float(np.mean(losses)),
            "logit_scale": float(model.logit_scale.detach()),
            "valid_accuracy": accuracy,
        }
        history.append(entry)
        logger.info(
            "Small CLAP %s epoch %d/%d: loss %.4f, logit scale %.1f, zero-shot valid accuracy %.3f",
            stage,
            epoch,
            epochs,
            entry["loss"],
            entry["logit_scale"],
            entry["valid_accuracy"],
        )
    return history
