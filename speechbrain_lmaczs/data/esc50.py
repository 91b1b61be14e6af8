"""ESC-50 (K. J. Piczak, ACM MM 2015): download when needed, then one manifest for the chosen folds.

Layout of the official archive once unpacked (``ESC-50-master/`` or any folder holding the same)::

    audio/{fold}-{src_file}-{take}-{target}.wav      2000 clips, 44.1 kHz mono, 5 s
    meta/esc50.csv                                   filename,fold,target,category,esc10,src_file,take
"""

import logging
import os

from speechbrain_lmaczs.data.download import download_file, extract_archive, is_empty_folder
from speechbrain_lmaczs.data.manifest import (
    DataPrepError,
    MissingDataError,
    audio_entries,
    check_folds,
    folded_csv_rows,
    parse_int,
    read_csv,
    run_prep,
)

logger = logging.getLogger(__name__)

#: the official archive (GitHub's archive of the master branch, ~600 MB)
ESC50_URL = "https://github.com/karolpiczak/ESC-50/archive/master.zip"
ESC50_FOLDS = (1, 2, 3, 4, 5)
ESC50_CSV = os.path.join("meta", "esc50.csv")
_COLUMNS = ("filename", "fold", "target", "category")


def find_esc50_root(data_folder):
    """The folder holding ``meta/esc50.csv``: ``data_folder`` itself or one of its direct subfolders.

    Returns
    -------
    str or None
        None when neither holds the metadata.
    """
    if os.path.isfile(os.path.join(data_folder, ESC50_CSV)):
        return data_folder
    if not os.path.isdir(data_folder):
        return None
    for name in sorted(os.listdir(data_folder)):
        candidate = os.path.join(data_folder, name)
        if not name.startswith(".") and os.path.isfile(os.path.join(candidate, ESC50_CSV)):
            return candidate
    return None


def download_esc50(data_folder, url=ESC50_URL):
    """Download and unpack the official ESC-50 archive into ``data_folder``, and check that it is complete.

    Parameters
    ----------
    data_folder : str
        An empty (or missing) folder.
    url : str
        Where the archive is.

    Returns
    -------
    str
        The folder holding ``audio/`` and ``meta/``.
    """
    os.makedirs(data_folder, exist_ok=True)
    # Hidden name: while it exists the folder still counts as empty, so a rerun resumes the download.
    archive = os.path.join(data_folder, ".download-ESC-50.zip")
    download_file(url, archive)
    extract_archive(archive, data_folder)
    root = find_esc50_root(data_folder)
    if root is None:
        raise DataPrepError(f"The archive from {url} holds no {ESC50_CSV}: is the URL right?")
    frame = read_csv(os.path.join(root, ESC50_CSV), _COLUMNS, "ESC-50 metadata")
    absent = [f for f in frame["filename"] if not os.path.isfile(os.path.join(root, "audio", f))]
    if absent:
        raise DataPrepError(
            f"The ESC-50 archive from {url} is incomplete: {len(absent)} of {len(frame)} clips listed in "
            f"{ESC50_CSV} are missing (e.g. {absent[:3]}). Empty {data_folder} and run again."
        )
    os.remove(archive)
    logger.info("ESC-50 is ready in %s (%d clips).", root, len(frame))
    return root


def prepare_esc50(data_folder, save_folder, folds=None, output="esc50.json", download=True, url=ESC50_URL):
    """Write the ESC-50 manifest ``save_folder/output``.

    Entries: ``{"wav", "duration", "class_string", "classID", "fold"}``, keyed by the file name without
    ``.wav``. ``class_string`` is the ESC-50 category (``"car_horn"``), ``classID`` its ``target``.

    Parameters
    ----------
    data_folder : str
        The unpacked dataset (holding ``audio/`` and ``meta/``, directly or in one subfolder such as
        ``ESC-50-master/``); if it is empty or missing, the official archive is downloaded into it.
    save_folder : str
        Where the manifest goes.
    folds : list of int, optional
        Folds (1-5) to keep; None keeps the whole dataset (the zero-shot convention).
    output : str
        Manifest file name.
    download : bool
        Whether an empty ``data_folder`` may be filled by downloading (False raises instead).
    url : str
        Where the official archive is.

    Returns
    -------
    str
        Path of the manifest.
    """
    data_folder = os.path.abspath(data_folder)
    folds = check_folds(folds, ESC50_FOLDS, "ESC-50")
    manifest = os.path.join(save_folder, output)
    options = {"dataset": "esc50", "data_folder": data_folder, "folds": folds}

    def build():
        root = find_esc50_root(data_folder)
        if root is None:
            if not is_empty_folder(data_folder):
                raise MissingDataError(
                    f"{data_folder} is not empty but holds no {ESC50_CSV} (nor does any subfolder). Pass the "
                    "unpacked ESC-50 folder (with audio/ and meta/), or an empty folder to download it into."
                )
            if not download:
                raise MissingDataError(f"ESC-50 is not in {data_folder}: set download=True or unpack it there.")
            root = download_esc50(data_folder, url)
        csv_file = os.path.join(root, ESC50_CSV)
        frame = read_csv(csv_file, _COLUMNS, "ESC-50 metadata")
        rows = folded_csv_rows(
            frame,
            csv_file,
            folds,
            "filename",
            lambda filename, fold: os.path.join(root, "audio", filename),
            lambda rec, fold: {
                "class_string": rec["category"].strip(),
                "classID": parse_int(rec["target"], "target", csv_file),
                "fold": fold,
            },
        )
        return audio_entries(rows, csv_file, "ESC-50")

    return run_prep(manifest, options, build, sources=[data_folder])
