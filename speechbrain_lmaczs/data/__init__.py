"""Data: dataset preparation (manifests), the audio pipeline, and out-of-domain contamination.

Preparations write a JSON manifest and return its path; recipes call them through SpeechBrain's
``run_on_main``. Every dataset with its own preparation code is one line of :data:`DATASETS`, which the recipes
(``eval_dataset``, ``train_data``), ``python -m speechbrain_lmaczs.prepare`` and ``lmaczs explain`` read:

- :func:`prepare_esc50`, :func:`prepare_urbansound8k`: labelled evaluation sets;
- :func:`prepare_clotho`, :func:`prepare_captions`: caption data for training;
- :func:`prepare_labels`: any folder of audio + CSV of labels (evaluation, or training on label captions);
- :func:`prepare_speech`, :func:`prepare_ljspeech`: speech pools for the "speech" contamination.

:func:`make_dataset` turns a manifest into a ``DynamicItemDataset``; :class:`Contaminator` adds mixtures, white
noise or speech at a given SNR.

>>> list(DATASETS)
['esc50', 'urbansound8k', 'clotho', 'speech', 'ljspeech']
>>> [name for name, dataset in DATASETS.items() if dataset.kind == "labels"]
['esc50', 'urbansound8k']
"""

import dataclasses
from typing import Callable

from speechbrain_lmaczs.data.captions import label_caption, prepare_captions, prepare_clotho, prepare_labels
from speechbrain_lmaczs.data.contamination import CONDITIONS, Contaminator
from speechbrain_lmaczs.data.esc50 import ESC50_FOLDS, prepare_esc50
from speechbrain_lmaczs.data.manifest import DataPrepError, MissingDataError
from speechbrain_lmaczs.data.pipeline import class_names, load_audio, load_clip, make_dataset, read_manifest, subset
from speechbrain_lmaczs.data.speech import prepare_ljspeech, prepare_speech
from speechbrain_lmaczs.data.urbansound8k import US8K_FOLDS, prepare_urbansound8k

#: what a dataset is for: a labelled evaluation set, captions to train on, a pool of speech for the contamination
KINDS = ("labels", "captions", "speech")


@dataclasses.dataclass(frozen=True)
class CodedDataset:
    """A dataset with its own preparation code: how to prepare it and where its manifest goes.

    Parameters
    ----------
    prepare : callable
        ``prepare(data_folder, save_folder, output=..., [folds=...], [download=...])`` -> manifest path.
    manifest : str
        Default manifest file name (``lmaczs explain`` looks for it in a training run's ``manifests/``).
    kind : str
        One of :data:`KINDS`: ``"labels"`` (entries with ``class_string`` and ``classID``: an ``eval_dataset``),
        ``"captions"`` (entries with ``caption``: a ``train_data``) or ``"speech"``.
    description : str
        One line for ``python -m speechbrain_lmaczs.prepare -h``.
    folds : tuple of int
        The dataset's folds (``prepare`` takes ``folds=``); empty when it has none.
    downloads : bool
        Whether ``prepare`` can download into an empty folder (it takes ``download=``).
    """

    prepare: Callable
    manifest: str
    kind: str
    description: str
    folds: tuple = ()
    downloads: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}.")

    def run(self, data_folder, save_folder, output=None, folds=None, download=True):
        """Prepare the dataset: the manifest ``save_folder/output`` (default :attr:`manifest`); returns its path."""
        options = {"output": output or self.manifest}
        if self.folds:
            options["folds"] = folds
        elif folds is not None:
            raise DataPrepError(f"{self.prepare.__name__} takes no folds: leave them out (null).")
        if self.downloads:
            options["download"] = download
        return self.prepare(data_folder, save_folder, **options)


#: name (``eval_dataset``, ``train_data``, the ``prepare`` subcommand) -> dataset
DATASETS = {
    "esc50": CodedDataset(
        prepare_esc50, "esc50.json", "labels", "ESC-50 (downloaded into an empty data_folder)", ESC50_FOLDS, True
    ),
    "urbansound8k": CodedDataset(
        prepare_urbansound8k, "urbansound8k.json", "labels", "UrbanSound8K (request form: no download)", US8K_FOLDS
    ),
    "clotho": CodedDataset(
        prepare_clotho, "clotho.json", "captions", "Clotho v2.1 development captions (missing files are downloaded)",
        downloads=True,
    ),
    "speech": CodedDataset(
        prepare_speech, "speech.json", "speech", "any folder of speech files (WAV/FLAC/OGG, searched recursively)"
    ),
    "ljspeech": CodedDataset(
        prepare_ljspeech, "speech.json", "speech", "LJ Speech 1.1 (downloaded into an empty data_folder)", (), True
    ),
}


def datasets_of_kind(kind):
    """Names of the :data:`DATASETS` of one kind, in table order.

    >>> datasets_of_kind("captions")
    ['clotho']
    """
    return [name for name, dataset in DATASETS.items() if dataset.kind == kind]


__all__ = [
    "CONDITIONS",
    "DATASETS",
    "CodedDataset",
    "datasets_of_kind",
    "Contaminator",
    "DataPrepError",
    "MissingDataError",
    "class_names",
    "label_caption",
    "load_audio",
    "load_clip",
    "make_dataset",
    "prepare_captions",
    "prepare_clotho",
    "prepare_esc50",
    "prepare_labels",
    "prepare_ljspeech",
    "prepare_speech",
    "prepare_urbansound8k",
    "read_manifest",
    "subset",
]
