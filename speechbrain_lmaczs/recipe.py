"""Glue shared by the recipes (ESC-50, UrbanSound8K, your own data): preparation, datasets, explanation WAVs.

The recipes' ``train.py`` and ``eval.py`` stay thin: they parse arguments, load the yaml and call these functions.
"""

import logging
import os
import random
import re

import soundfile as sf
import torch

from speechbrain_lmaczs.classifier import make_prompts
from speechbrain_lmaczs.data import (
    class_names,
    make_dataset,
    prepare_captions,
    prepare_clotho,
    prepare_esc50,
    prepare_labels,
    prepare_urbansound8k,
    read_manifest,
)

logger = logging.getLogger(__name__)

EVAL_DATASETS = ("esc50", "urbansound8k", "labels", "manifest")
TRAIN_DATA = ("clotho", "captions", "labels", "manifest")


def _require(hparams, key, why):
    if hparams[key] in (None, ""):
        raise ValueError(f"Set {key} ({why}), e.g. --{key}=/path.")
    return hparams[key]


def _existing_manifest(hparams, key):
    path = _require(hparams, key, "a JSON manifest written by a preparation or by hand")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{key} {path!r} does not exist: prepare it first or fix the path.")
    return path


def prepare_eval_manifest(hparams):
    """Prepare the labelled evaluation set named by ``eval_dataset``; returns the manifest path."""
    name, save = hparams["eval_dataset"], hparams["manifest_folder"]
    folds = hparams["eval_folds"]
    if name == "esc50":
        return prepare_esc50(hparams["data_folder"], save, folds=folds)
    if name == "urbansound8k":
        return prepare_urbansound8k(hparams["data_folder"], save, folds=folds)
    if name == "labels":
        csv = _require(hparams, "eval_csv", "a CSV with filename,label[,fold] columns")
        return prepare_labels(
            csv,
            _require(hparams, "eval_audio_folder", "the folder the CSV's file names are relative to"),
            save,
            output="eval_labels.json",
            folds=folds,
            template=hparams["prompt_template"],
        )
    if name == "manifest":
        return _existing_manifest(hparams, "eval_manifest")
    raise ValueError(f"Unknown eval_dataset {name!r}: use one of {EVAL_DATASETS}.")


def prepare_train_manifest(hparams, eval_manifest):
    """Prepare the training data named by ``train_data``; returns the manifest path."""
    name, save = hparams["train_data"], hparams["manifest_folder"]
    if name == "clotho":
        return prepare_clotho(_require(hparams, "clotho_folder", "Clotho v2 root; downloaded when empty"), save)
    if name == "captions":
        return prepare_captions(
            _require(hparams, "train_csv", "a CSV of file names and captions"),
            _require(hparams, "train_audio_folder", "the folder the CSV's file names are relative to"),
            save,
            caption_columns=(hparams["caption_column"],),
        )
    if name == "labels":
        # The evaluation set's labels become captions (prompt template): for smoke runs and custom labelled data.
        return eval_manifest
    if name == "manifest":
        return _existing_manifest(hparams, "train_manifest")
    raise ValueError(f"Unknown train_data {name!r}: use one of {TRAIN_DATA}.")


def prepare_manifests(hparams):
    """Both manifests, as a dict {"train": path, "eval": path} (call through ``run_on_main``)."""
    eval_manifest = prepare_eval_manifest(hparams)
    return {"eval": eval_manifest, "train": prepare_train_manifest(hparams, eval_manifest)}


def subset(manifest, max_items, seed):
    """At most ``max_items`` entries of a manifest, drawn with ``seed`` (all of them when None)."""
    data = read_manifest(manifest)
    if max_items is None or max_items >= len(data):
        return data
    keys = sorted(random.Random(seed).sample(sorted(data), int(max_items)))
    return {k: data[k] for k in keys}


def dataio_prep(hparams, manifests, clap):
    """Training and validation datasets plus the evaluation labels and prompts.

    Returns
    -------
    dict
        ``train`` and ``valid`` (DynamicItemDatasets), ``labels`` (class names) and ``prompts``.
    """
    labels = class_names(manifests["eval"])
    template = hparams["prompt_template"]
    train = make_dataset(
        manifests["train"],
        clap.sample_rate,
        clap.clip_samples,
        train=True,
        template=template,
        labels=labels if hparams["train_data"] == "labels" else None,
    )
    valid = make_dataset(
        subset(manifests["eval"], hparams["valid_max_clips"], hparams["seed"]),
        clap.sample_rate,
        clap.clip_samples,
        template=template,
        labels=labels,
    )
    return {"train": train, "valid": valid, "labels": labels, "prompts": make_prompts(labels, template)}


def slug(text, max_len=60):
    """File-name-safe version of a prompt.

    >>> slug("this is the sound of car horn!")
    'this_is_the_sound_of_car_horn'
    """
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:max_len] or "prompt"


@torch.no_grad()
def write_explanations(interpreter, domain, dataset, folder, n_items, device="cpu"):
    """Write listenable explanations of the first ``n_items`` clips of ``dataset`` for their predicted class.

    For each clip ``ID``: ``ID.wav`` (the clip as the model saw it, at the listening rate) and
    ``ID__<prompt>.wav`` (the explanation: the mask applied to the STFT magnitude with the original phase).

    Returns
    -------
    list of str
        Paths of the explanation WAVs.
    """
    os.makedirs(folder, exist_ok=True)
    written = []
    for i in range(min(n_items, len(dataset))):
        item = dataset[i]
        wav = item["wav"].unsqueeze(0).to(device)
        x = domain.representation(wav)
        predicted = interpreter.classifier(x).argmax(-1)
        mask = interpreter.explain(x, predicted)
        heard = domain.listen(wav, mask)
        rate = domain.output_sample_rate
        original = domain.listen(wav, torch.ones_like(mask))
        sf.write(os.path.join(folder, f"{item['id']}.wav"), original[0].cpu().numpy(), rate)
        prompt = interpreter.classifier.prompts[int(predicted)]
        path = os.path.join(folder, f"{item['id']}__{slug(prompt)}.wav")
        sf.write(path, heard[0].cpu().numpy(), rate)
        written.append(path)
    logger.info("Wrote %d listenable explanations to %s", len(written), folder)
    return written
