"""Glue shared by the recipes (ESC-50, UrbanSound8K, your own data): preparation, datasets, explanation WAVs.

The recipes' ``train.py`` and ``eval.py`` stay thin: they parse arguments, load the yaml and call these functions.
"""

import logging
import os
import re
import unicodedata

import soundfile as sf
import torch

from speechbrain_lmaczs.classifier import make_prompts
from speechbrain_lmaczs.data import (
    DATASETS,
    class_names,
    datasets_of_kind,
    make_dataset,
    prepare_captions,
    prepare_labels,
    subset,
)

logger = logging.getLogger(__name__)

#: manifest file name of ``eval_dataset: labels`` (a CSV of labels), beside the coded datasets' own
EVAL_LABELS_MANIFEST = "eval_labels.json"


def _require(hparams, key, why):
    if hparams[key] in (None, ""):
        raise ValueError(f"Set {key} ({why}), e.g. --{key}=/path.")
    return hparams[key]


def _existing_manifest(hparams, key):
    path = _require(hparams, key, "a JSON manifest written by a preparation or by hand")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{key} {path!r} does not exist: prepare it first or fix the path.")
    return path


def _eval_labels(hparams):
    return prepare_labels(
        _require(hparams, "eval_csv", "a CSV with filename,label[,fold] columns"),
        _require(hparams, "eval_audio_folder", "the folder the CSV's file names are relative to"),
        hparams["manifest_folder"],
        output=EVAL_LABELS_MANIFEST,
        folds=hparams["eval_folds"],
        template=hparams["prompt_template"],
    )


def _train_captions(hparams):
    return prepare_captions(
        _require(hparams, "train_csv", "a CSV of file names and captions"),
        _require(hparams, "train_audio_folder", "the folder the CSV's file names are relative to"),
        hparams["manifest_folder"],
        caption_columns=(hparams["caption_column"],),
    )


#: ``eval_dataset`` values besides the labelled :data:`~speechbrain_lmaczs.data.DATASETS` (read ``data_folder``)
EVAL_SOURCES = {"labels": _eval_labels, "manifest": lambda hparams: _existing_manifest(hparams, "eval_manifest")}
#: ``train_data`` values besides the caption :data:`~speechbrain_lmaczs.data.DATASETS` (read ``<name>_folder``),
#: each called with the hparams and the evaluation manifest; ``labels`` trains on the evaluation set's label
#: captions (prompt template): for smoke runs and custom labelled data
TRAIN_SOURCES = {
    "captions": lambda hparams, eval_manifest: _train_captions(hparams),
    "labels": lambda hparams, eval_manifest: eval_manifest,
    "manifest": lambda hparams, eval_manifest: _existing_manifest(hparams, "train_manifest"),
}
EVAL_DATASETS = tuple(datasets_of_kind("labels")) + tuple(EVAL_SOURCES)
TRAIN_DATA = tuple(datasets_of_kind("captions")) + tuple(TRAIN_SOURCES)


def train_folder_key(name):
    """The yaml key of the folder of the caption dataset ``name`` (``clotho`` -> ``clotho_folder``).

    >>> train_folder_key("clotho")
    'clotho_folder'
    """
    return f"{name}_folder"


def prepare_eval_manifest(hparams):
    """Prepare the labelled evaluation set named by ``eval_dataset``; returns the manifest path."""
    name = hparams["eval_dataset"]
    if name in datasets_of_kind("labels"):
        return DATASETS[name].run(hparams["data_folder"], hparams["manifest_folder"], folds=hparams["eval_folds"])
    if name not in EVAL_SOURCES:
        raise ValueError(f"Unknown eval_dataset {name!r}: use one of {EVAL_DATASETS}.")
    return EVAL_SOURCES[name](hparams)


def prepare_train_manifest(hparams, eval_manifest):
    """Prepare the training data named by ``train_data``; returns the manifest path."""
    name = hparams["train_data"]
    if name in datasets_of_kind("captions"):
        folder = _require(hparams, train_folder_key(name), f"the {name} root; downloaded when empty")
        return DATASETS[name].run(folder, hparams["manifest_folder"])
    if name not in TRAIN_SOURCES:
        raise ValueError(f"Unknown train_data {name!r}: use one of {TRAIN_DATA}.")
    return TRAIN_SOURCES[name](hparams, eval_manifest)


def prepare_manifests(hparams):
    """Both manifests, as a dict {"train": path, "eval": path} (call through ``run_on_main``)."""
    eval_manifest = prepare_eval_manifest(hparams)
    return {"eval": eval_manifest, "train": prepare_train_manifest(hparams, eval_manifest)}


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
    """File-name-safe version of a prompt: letters and digits of any script are kept, the rest becomes ``_``.

    >>> slug("this is the sound of car horn!")
    'this_is_the_sound_of_car_horn'
    >>> slug("狗在叫"), slug("лай собаки"), slug("?!")
    ('狗在叫', 'лай_собаки', 'prompt')
    """
    text = unicodedata.normalize("NFC", text)
    return re.sub(r"[\W_]+", "_", text).strip("_")[:max_len] or "prompt"


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
