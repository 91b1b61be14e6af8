"""Localization of explanations against the exact supports of synthetic sound scenes.

Every method explains the same zero-shot classifier (a trained LMAC-ZS checkpoint's) on scenes written by
:func:`speechbrain_lmaczs.synthetic.dataset.write_synthetic_dataset`, whose per-event time-frequency supports are known:

- single-event scenes: the mask for the event's own prompt is scored against the event's support with the top-k%
  IoU, the pointing game, the share of the mask's mass in the support and the average precision
  (:func:`speechbrain_lmaczs.metrics.localization_metrics`; none depends on the order of tied mask values);
- two-event scenes: each event's prompt is explained in the mixture and scored against that event's support (the
  same scores, suffixed ``_mix``); the masks of the two prompts should overlap (IoU of their fractional top-k%
  regions) little more than the two supports do.
"""

import logging

import numpy as np
import torch
from tqdm import tqdm

from speechbrain_lmaczs.data import load_clip, read_manifest
from speechbrain_lmaczs.evaluation import make_interpreter
from speechbrain_lmaczs.metrics import (
    LOCALIZATION_NAMES,
    MetricAccumulator,
    fractional_iou,
    localization_metrics,
    top_k_membership,
)

logger = logging.getLogger(__name__)


def _scene_items(manifest, n_events):
    data = read_manifest(manifest)
    items = [(key, entry) for key, entry in data.items() if int(entry["n_events"]) == n_events]
    if not items:
        raise ValueError(f"{manifest} has no scene with {n_events} event(s).")
    return items


def _load(items, clap, grid):
    wavs = torch.stack([load_clip(entry["wav"], clap.sample_rate, clap.clip_samples) for _, entry in items])
    supports = [torch.from_numpy(np.load(entry["support"])[grid]) for _, entry in items]
    return wavs, supports


@torch.no_grad()
def localization_scores(
    model, manifest, classes, methods, interpreter_options=None, batch_size=8, grid="mel", device="cpu"
):
    """Localization scores of each method on single- and two-event scenes.

    Parameters
    ----------
    model : TrainedLMACZS
        Classifier, masking domain and trained decoder (the domain's grid must be the support grid ``grid``).
    manifest : str
        Synthetic manifest (entries with ``events``, ``n_events`` and ``support``).
    classes : list of str
        Class prompts in classID order (the classifier's prompts).
    methods : list of str
        Interpreter names (``"lmaczs"`` and the baselines).
    interpreter_options : dict, optional
        Method -> constructor options.
    batch_size : int
        Scenes per batch.
    grid : str
        Key of the support in the npz files (``"mel"`` for Mel masking).
    device : str
        Where the data goes.

    Returns
    -------
    dict
        method -> {"IoU", "pointing", "mass_in_support", "AP" (single-event), the same with ``_mix``,
        "mask_overlap_mix", "support_overlap_mix" (two-event; absent when the manifest has none), "n_single",
        "n_mix"}.
    """
    classifier = model.classifier(classes)
    single = _scene_items(manifest, 1)
    try:
        mixed = _scene_items(manifest, 2)
    except ValueError:
        mixed = []
    out = {}
    for method in methods:
        interpreter = make_interpreter(method, classifier, model, (interpreter_options or {}).get(method))
        single_acc, mix_acc, overlap_acc = MetricAccumulator(), MetricAccumulator(), MetricAccumulator()
        for start in tqdm(range(0, len(single), batch_size), desc=f"localization {method}", leave=False):
            items = single[start : start + batch_size]
            wavs, supports = _load(items, model.clap, grid)
            x = model.domain.representation(wavs.to(device))
            target = torch.tensor([int(entry["events"][0]["classID"]) for _, entry in items], device=device)
            masks = interpreter.explain(x, target).cpu()
            single_acc.update(localization_metrics(masks, torch.stack([s[0] for s in supports])))
        for start in tqdm(range(0, len(mixed), batch_size), desc=f"two-event {method}", leave=False):
            items = mixed[start : start + batch_size]
            wavs, supports = _load(items, model.clap, grid)
            x = model.domain.representation(wavs.to(device))
            per_event = []
            for e in range(2):
                target = torch.tensor([int(entry["events"][e]["classID"]) for _, entry in items], device=device)
                masks = interpreter.explain(x, target).cpu()
                support = torch.stack([s[e] for s in supports])
                per_event.append((masks, support))
                mix_acc.update({f"{k}_mix": v for k, v in localization_metrics(masks, support).items()})
            (m0, s0), (m1, s1) = per_event
            # each prompt's top-k region, k = its event's support size (at least one bin), ties shared
            top0 = top_k_membership(m0, s0.flatten(1).sum(-1).clamp(min=1))
            top1 = top_k_membership(m1, s1.flatten(1).sum(-1).clamp(min=1))
            overlap_acc.update(
                {
                    "mask_overlap_mix": fractional_iou(top0, top1),
                    "support_overlap_mix": fractional_iou(s0, s1),
                }
            )
        row = {k: v for k, v in single_acc.summary().items() if k in LOCALIZATION_NAMES}
        row["n_single"] = len(single)
        if mixed:
            for acc in (mix_acc, overlap_acc):
                summary = acc.summary()
                row.update({k: summary[k] for k in summary if k.endswith("_mix")})
        row["n_mix"] = len(mixed)
        out[method] = row
        logger.info("Localization %s: %s", method, {k: round(float(v), 4) for k, v in row.items()})
    return out


@torch.no_grad()
def median_overlap_scene(model, entries, classes, method="lmaczs", grid="mel", batch_size=8):
    """The two-event scene on which a method's two prompts overlap as on a typical scene: the median one.

    For each scene, both events' prompts are explained and the IoU of the two fractional top-k regions (k = each
    event's support size) is measured, as ``mask_overlap_mix`` of :func:`localization_scores`; the scene of the
    median overlap (the lower middle one for an even count; the first such scene on ties) is returned with its
    overlap. The demo's report shows it: a rule, not a scene picked by hand.

    Parameters
    ----------
    model : TrainedLMACZS
    entries : list of dict
        Two-event manifest entries.
    classes : list of str
        Class prompts in classID order.
    method : str
        The interpreter.

    Returns
    -------
    tuple
        (entry, overlap)
    """
    if not entries:
        raise ValueError("median_overlap_scene needs at least one two-event scene.")
    classifier = model.classifier(classes)
    interpreter = make_interpreter(method, classifier, model)
    overlaps = []
    for start in range(0, len(entries), batch_size):
        items = [(None, entry) for entry in entries[start : start + batch_size]]
        wavs, supports = _load(items, model.clap, grid)
        x = model.domain.representation(wavs)
        tops = []
        for e in range(2):
            target = torch.tensor([int(entry["events"][e]["classID"]) for _, entry in items])
            counts = torch.stack([s[e] for s in supports]).flatten(1).sum(-1).clamp(min=1)
            tops.append(top_k_membership(interpreter.explain(x, target).cpu(), counts))
        overlaps += fractional_iou(*tops).tolist()
    order = sorted(range(len(overlaps)), key=lambda i: (overlaps[i], i))
    best = order[(len(order) - 1) // 2]
    return entries[best], overlaps[best]


@torch.no_grad()
def scene_figure(model, entry, classes, methods, path, interpreter_options=None, grid="mel"):
    """One PNG: a scene's log-mel with each event's support outlined, then each method's mask for each event.

    Parameters
    ----------
    model : TrainedLMACZS
    entry : dict
        A synthetic manifest entry.
    classes : list of str
        Class prompts in classID order.
    methods : list of str
    path : str
        Where the PNG goes.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    classifier = model.classifier(classes)
    wav = load_clip(entry["wav"], model.clap.sample_rate, model.clap.clip_samples)[None]
    x = model.domain.representation(wav)
    supports = np.load(entry["support"])[grid]
    events = entry["events"]
    fig, axes = plt.subplots(len(events), len(methods) + 1, figsize=(2.2 * (len(methods) + 1), 2.2 * len(events)),
                             squeeze=False)
    seconds = model.clap.clip_samples / model.clap.sample_rate
    extent = [0, seconds, 0, x.shape[-1]]
    interpreters = [make_interpreter(m, classifier, model, (interpreter_options or {}).get(m)) for m in methods]
    for row, event in enumerate(events):
        ax = axes[row, 0]
        ax.imshow(x[0].T.numpy(), origin="lower", aspect="auto", extent=extent, cmap="magma")
        ax.contour(supports[row].T, levels=[0.5], colors="cyan", linewidths=0.8, origin="lower", extent=extent)
        ax.set_title(f"{event['label']} (support)", fontsize=8)
        target = torch.tensor([int(event["classID"])])
        for col, (method, interpreter) in enumerate(zip(methods, interpreters), start=1):
            mask = interpreter.explain(x, target)[0]
            ax = axes[row, col]
            ax.imshow(mask.T.numpy(), origin="lower", aspect="auto", extent=extent, vmin=0, vmax=1, cmap="viridis")
            ax.contour(supports[row].T, levels=[0.5], colors="red", linewidths=0.6, origin="lower", extent=extent)
            ax.set_title(method, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Masks per method (red: the event's true support)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
