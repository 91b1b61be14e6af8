"""UrbanSound8K (J. Salamon, C. Jacoby, J. P. Bello, ACM MM 2014): check the folder, then one manifest.

The dataset is distributed through a request form, so nothing is downloaded here. Layout::

    audio/fold1 ... audio/fold10/*.wav    8732 clips <= 4 s, mixed sample rates and channel counts
    metadata/UrbanSound8K.csv            slice_file_name,fsID,start,end,salience,fold,classID,class

Durations are read from the file headers with soundfile.
"""

import logging
import os

from speechbrain_lmaczs.data.manifest import (
    MissingDataError,
    audio_entries,
    check_folds,
    folded_csv_rows,
    parse_int,
    read_csv,
    run_prep,
)

logger = logging.getLogger(__name__)

US8K_FOLDS = tuple(range(1, 11))
US8K_CSV = os.path.join("metadata", "UrbanSound8K.csv")
US8K_REQUEST_URL = "https://urbansounddataset.weebly.com/urbansound8k.html"
_COLUMNS = ("slice_file_name", "salience", "fold", "classID", "class")


def find_urbansound8k_root(data_folder):
    """``data_folder`` or its ``UrbanSound8K/`` subfolder (what the official tarball unpacks to)."""
    nested = os.path.join(data_folder, "UrbanSound8K")
    if not os.path.isfile(os.path.join(data_folder, US8K_CSV)) and os.path.isfile(os.path.join(nested, US8K_CSV)):
        return nested
    return data_folder


def check_urbansound8k(data_folder, folds=None):
    """Check the UrbanSound8K layout and raise one error that lists everything missing.

    Parameters
    ----------
    data_folder : str
        The unpacked dataset (holding ``audio/`` and ``metadata/``, or an ``UrbanSound8K/`` folder that does).
    folds : list of int, optional
        Only these folds need their audio folder; None means all ten.

    Returns
    -------
    str
        The folder holding ``audio/`` and ``metadata/``.
    """
    how = (
        f"UrbanSound8K cannot be downloaded automatically: request it at {US8K_REQUEST_URL}, unpack it, and "
        "pass the folder that holds audio/ and metadata/."
    )
    if not os.path.isdir(data_folder):
        raise MissingDataError(f"UrbanSound8K folder {data_folder!r} does not exist. {how}")
    root = find_urbansound8k_root(data_folder)
    missing = []
    if not os.path.isfile(os.path.join(root, US8K_CSV)):
        missing.append(US8K_CSV)
    for fold in folds or US8K_FOLDS:
        if not os.path.isdir(os.path.join(root, "audio", f"fold{fold}")):
            missing.append(f"audio/fold{fold}/")
    if missing:
        present = [fold for fold in US8K_FOLDS if os.path.isdir(os.path.join(root, "audio", f"fold{fold}"))]
        if present and os.path.isfile(os.path.join(root, US8K_CSV)):
            # Some folds are there: they can be used on their own.
            folds_option = " ".join(str(fold) for fold in present)
            how = f"To use the folds present, pass --folds {folds_option} (yaml: eval_folds: {present}). {how}"
        raise MissingDataError(f"UrbanSound8K in {root} is incomplete, missing: {', '.join(missing)}. {how}")
    return root


def prepare_urbansound8k(data_folder, save_folder, folds=None, output="urbansound8k.json"):
    """Write the UrbanSound8K manifest ``save_folder/output``.

    Entries: ``{"wav", "duration", "class_string", "classID", "fold", "salience"}``, keyed by the file name
    without ``.wav``.

    Parameters
    ----------
    data_folder : str
        The unpacked dataset (see :func:`check_urbansound8k`).
    save_folder : str
        Where the manifest goes.
    folds : list of int, optional
        Folds (1-10) to keep; None keeps the whole dataset (the zero-shot convention).
    output : str
        Manifest file name.

    Returns
    -------
    str
        Path of the manifest.
    """
    data_folder = os.path.abspath(data_folder)
    folds = check_folds(folds, US8K_FOLDS, "UrbanSound8K")
    root = check_urbansound8k(data_folder, folds)
    manifest = os.path.join(save_folder, output)
    options = {"dataset": "urbansound8k", "data_folder": data_folder, "folds": folds}

    def build():
        csv_file = os.path.join(root, US8K_CSV)
        frame = read_csv(csv_file, _COLUMNS, "UrbanSound8K metadata")
        rows = folded_csv_rows(
            frame,
            csv_file,
            folds,
            "slice_file_name",
            lambda filename, fold: os.path.join(root, "audio", f"fold{fold}", filename),
            lambda rec, fold: {
                "class_string": rec["class"].strip(),
                "classID": parse_int(rec["classID"], "classID", csv_file),
                "fold": fold,
                "salience": parse_int(rec["salience"], "salience", csv_file),
            },
        )
        return audio_entries(rows, csv_file, "UrbanSound8K")

    return run_prep(manifest, options, build, sources=[data_folder])
