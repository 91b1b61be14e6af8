"""Caption data for training the decoder, and labelled datasets turned into captions.

- :func:`prepare_captions`: any "folder of audio + CSV of captions" (AudioCaps, FSD50K, MACS, your own set); one
  item per (clip, caption) pair.
- :func:`prepare_clotho`: Clotho v2.1, development split (downloaded from Zenodo when missing).
- :func:`prepare_labels`: any "folder of audio + CSV of labels"; each clip gets ``class_string``/``classID``
  (and ``fold`` when the CSV has one) plus a caption built from its label with a prompt template, so the same
  manifest serves zero-shot evaluation and training.
"""

import logging
import os

from speechbrain_lmaczs.classifier import DEFAULT_TEMPLATE, make_prompts
from speechbrain_lmaczs.data.download import download_file, extract_archive, seven_zip_available
from speechbrain_lmaczs.data.manifest import (
    DataPrepError,
    MissingDataError,
    audio_entries,
    check_folds,
    item_id,
    parse_int,
    read_csv,
    require_folder,
    run_prep,
)

logger = logging.getLogger(__name__)

#: Clotho v2.1 on Zenodo (record 4783391)
CLOTHO_URL = "https://zenodo.org/records/4783391/files"
CLOTHO_CAPTIONS = "clotho_captions_development.csv"
CLOTHO_ARCHIVE = "clotho_audio_development.7z"
CLOTHO_AUDIO = "development"
#: published MD5 sums of the Clotho v2.1 development files
CLOTHO_MD5 = {
    CLOTHO_ARCHIVE: "c8b05bc7acdb13895bb3c6a29608667e",
    CLOTHO_CAPTIONS: "d4090b39ce9f2491908eebf4d5b09bae",
}
CLOTHO_CAPTION_COLUMNS = tuple(f"caption_{k}" for k in range(1, 6))


def label_caption(label, template=DEFAULT_TEMPLATE):
    """Caption of a class label: the prompt template filled with the label, underscores as spaces.

    >>> label_caption("car_horn")
    'this is the sound of car horn'
    >>> label_caption("dog", "a recording of {label}")
    'a recording of dog'
    """
    return make_prompts([label], template)[0]


def _check_template(template):
    if "{label}" not in template:
        raise DataPrepError(f"The caption template must contain '{{label}}', got {template!r}.")
    try:
        label_caption("x", template)
    except (KeyError, IndexError, ValueError) as err:
        raise DataPrepError(f"The caption template {template!r} has a placeholder other than {{label}}.") from err


def caption_entries(csv_file, audio_folder, filename_column="filename", caption_columns=("caption",)):
    """Entries ``{"wav", "duration", "caption"}`` of a captions CSV, one per non-empty caption cell.

    Ids are ``{file id}_{k}``, k counting the captions of that file from 1 (over rows and columns).

    Parameters
    ----------
    csv_file : str
        CSV with a header row.
    audio_folder : str
        Folder the file names are relative to.
    filename_column : str
        Column holding the file name (may include subfolders).
    caption_columns : sequence of str
        Columns holding captions; each non-empty cell is one item.

    Returns
    -------
    dict
        id -> entry.
    """
    if isinstance(caption_columns, str):
        caption_columns = [caption_columns]
    frame = read_csv(csv_file, [filename_column, *caption_columns], "captions CSV")
    rows, rejected, counts = [], [], {}
    for line, rec in enumerate(frame.to_dict("records"), start=2):
        filename = rec[filename_column].strip()
        if not filename:
            rows.append((f"{csv_file} line {line}", "", {}))
            continue
        path = os.path.join(audio_folder, filename)
        file_id = item_id(filename)
        for column in caption_columns:
            caption = rec[column].strip()
            if not caption:
                rejected.append((f"{csv_file} line {line}", f"empty {column}"))
                continue
            counts[file_id] = counts.get(file_id, 0) + 1
            rows.append((f"{file_id}_{counts[file_id]}", path, {"caption": caption}))
    return audio_entries(rows, csv_file, "Captions", skipped=rejected)


def prepare_captions(
    csv_file,
    audio_folder,
    save_folder,
    output="captions.json",
    filename_column="filename",
    caption_columns=("caption",),
):
    """Write a caption manifest for a folder of audio files and a CSV of captions.

    Works for AudioCaps, FSD50K, MACS or your own data once their metadata is a CSV with a file-name column and
    one or more caption columns (several rows may name the same file).

    Parameters
    ----------
    csv_file : str
        The CSV.
    audio_folder : str
        Folder the file names in the CSV are relative to.
    save_folder : str
        Where the manifest goes.
    output : str
        Manifest file name.
    filename_column : str
        Column with the file names.
    caption_columns : sequence of str
        Columns with captions.

    Returns
    -------
    str
        Path of the manifest (entries ``{"wav", "duration", "caption"}``).
    """
    csv_file, audio_folder = os.path.abspath(csv_file), os.path.abspath(audio_folder)
    caption_columns = [caption_columns] if isinstance(caption_columns, str) else list(caption_columns)
    require_folder(audio_folder, "Audio folder")
    if not os.path.isfile(csv_file):
        raise MissingDataError(f"Captions CSV {csv_file!r} does not exist: check the path.")
    options = {
        "dataset": "captions",
        "csv_file": csv_file,
        "audio_folder": audio_folder,
        "filename_column": filename_column,
        "caption_columns": caption_columns,
    }
    manifest = os.path.join(save_folder, output)
    return run_prep(
        manifest,
        options,
        lambda: caption_entries(csv_file, audio_folder, filename_column, caption_columns),
        sources=[csv_file, audio_folder],
    )


def download_clotho(data_folder, base_url=CLOTHO_URL):
    """Download what is missing of the Clotho v2.1 development split into ``data_folder``.

    Fetches ``clotho_captions_development.csv`` and ``clotho_audio_development.7z`` (several GB, unpacked to
    ``development/``), each checked against its published MD5 sum.

    Parameters
    ----------
    data_folder : str
        Destination folder.
    base_url : str
        Folder URL holding the two files.
    """
    os.makedirs(data_folder, exist_ok=True)
    if not os.path.isdir(os.path.join(data_folder, CLOTHO_AUDIO)):
        # Checked first: no point fetching gigabytes that cannot be unpacked.
        if not seven_zip_available():
            raise DataPrepError(
                f"Clotho's audio comes as a .7z archive: `pip install py7zr` or install the 7z command "
                f"(e.g. `apt-get install p7zip-full`), or download {base_url}/{CLOTHO_ARCHIVE} yourself and "
                f"unpack it so that {os.path.join(data_folder, CLOTHO_AUDIO)} holds the wav files."
            )
        archive = os.path.join(data_folder, f".download-{CLOTHO_ARCHIVE}")
        download_file(f"{base_url}/{CLOTHO_ARCHIVE}", archive, checksum=f"md5:{CLOTHO_MD5[CLOTHO_ARCHIVE]}")
        extract_archive(archive, data_folder)
        if not os.path.isdir(os.path.join(data_folder, CLOTHO_AUDIO)):
            raise DataPrepError(f"{CLOTHO_ARCHIVE} did not unpack to {CLOTHO_AUDIO}/: is the URL right?")
        os.remove(archive)
    csv_file = os.path.join(data_folder, CLOTHO_CAPTIONS)
    download_file(f"{base_url}/{CLOTHO_CAPTIONS}", csv_file, checksum=f"md5:{CLOTHO_MD5[CLOTHO_CAPTIONS]}")


def prepare_clotho(data_folder, save_folder, output="clotho.json", download=True, url=CLOTHO_URL):
    """Write the Clotho v2.1 development manifest: one item per (clip, caption) pair.

    Parameters
    ----------
    data_folder : str
        Folder holding ``clotho_captions_development.csv`` and ``development/*.wav``; whatever is missing is
        downloaded into it (when ``download`` is True).
    save_folder : str
        Where the manifest goes.
    output : str
        Manifest file name.
    download : bool
        Whether missing files may be downloaded (False raises instead).
    url : str
        Folder URL of the Zenodo record.

    Returns
    -------
    str
        Path of the manifest (entries ``{"wav", "duration", "caption"}``, ids ``{clip}_{1..5}``).
    """
    data_folder = os.path.abspath(data_folder)
    csv_file = os.path.join(data_folder, CLOTHO_CAPTIONS)
    audio_folder = os.path.join(data_folder, CLOTHO_AUDIO)
    options = {"dataset": "clotho", "data_folder": data_folder}

    def build():
        missing = [p for p in (csv_file, audio_folder) if not os.path.exists(p)]
        if missing:
            if not download:
                raise MissingDataError(
                    f"Clotho is incomplete in {data_folder}, missing {missing}: set download=True or put the "
                    f"files from {url} there ({CLOTHO_ARCHIVE} unpacked)."
                )
            download_clotho(data_folder, url)
        return caption_entries(csv_file, audio_folder, "file_name", CLOTHO_CAPTION_COLUMNS)

    return run_prep(os.path.join(save_folder, output), options, build, sources=[data_folder])


def prepare_labels(
    csv_file,
    audio_folder,
    save_folder,
    output="labels.json",
    filename_column="filename",
    label_column="label",
    fold_column="fold",
    folds=None,
    template=DEFAULT_TEMPLATE,
):
    """Write a labelled manifest for a folder of audio files and a CSV of labels.

    Each entry has ``wav``, ``duration``, ``class_string`` (the label), ``classID`` (the label's index in the
    sorted list of all labels of the CSV, so ids do not depend on the folds chosen), ``fold`` (when the CSV
    has ``fold_column``) and ``caption`` (``template`` filled with the label, underscores as spaces).

    Parameters
    ----------
    csv_file : str
        The CSV.
    audio_folder : str
        Folder the file names in the CSV are relative to.
    save_folder : str
        Where the manifest goes.
    output : str
        Manifest file name.
    filename_column, label_column : str
        Columns with the file names and the labels.
    fold_column : str or None
        Column with integer folds; used when the CSV has it.
    folds : list of int, optional
        Folds to keep (needs the fold column); None keeps every row.
    template : str
        Caption template with a ``{label}`` placeholder.

    Returns
    -------
    str
        Path of the manifest.
    """
    csv_file, audio_folder = os.path.abspath(csv_file), os.path.abspath(audio_folder)
    require_folder(audio_folder, "Audio folder")
    _check_template(template)
    frame = read_csv(csv_file, [filename_column, label_column], "labels CSV")
    has_folds = fold_column is not None and fold_column in frame.columns
    if folds is not None and not has_folds:
        raise DataPrepError(f"Folds {folds} were asked for, but {csv_file} has no {fold_column!r} column.")
    if has_folds:
        available = {parse_int(v, fold_column, csv_file) for v in frame[fold_column] if v.strip()}
        folds = check_folds(folds, available, csv_file)
    options = {
        "dataset": "labels",
        "csv_file": csv_file,
        "audio_folder": audio_folder,
        "filename_column": filename_column,
        "label_column": label_column,
        "fold_column": fold_column if has_folds else None,
        "folds": folds,
        "template": template,
    }

    def build():
        records = frame.to_dict("records")
        # Class ids index the sorted labels of the whole CSV (whatever the folds), each file counted once: a
        # repeated file's other label claims no id (it would shift every class after it).
        claimed = {}
        for rec in records:
            label, filename = rec[label_column].strip(), rec[filename_column].strip()
            if label and (not filename or item_id(filename) not in claimed):
                claimed[item_id(filename) if filename else object()] = label
        class_ids = {label: index for index, label in enumerate(sorted(set(claimed.values())))}
        rows, rejected, first_line = [], [], {}
        for line, rec in enumerate(records, start=2):
            where = f"{csv_file} line {line}"
            label, filename = rec[label_column].strip(), rec[filename_column].strip()
            if not label:
                rejected.append((where, f"empty {label_column}"))
                continue
            key = item_id(filename) if filename else where
            if key in first_line:
                # The first row of a file is the one kept (as for the class ids), whatever the folds asked for.
                rejected.append((where, f"{filename} again (first on line {first_line[key]}), label {label!r}"))
                continue
            first_line[key] = line
            extra = {}
            if has_folds:
                if not rec[fold_column].strip():
                    rejected.append((where, f"empty {fold_column}"))
                    continue
                extra["fold"] = parse_int(rec[fold_column], fold_column, csv_file)
                if folds is not None and extra["fold"] not in folds:
                    continue
            extra = {
                "class_string": label,
                "classID": class_ids[label],
                **extra,
                "caption": label_caption(label, template),
            }
            rows.append((key, os.path.join(audio_folder, filename) if filename else "", extra))
        return audio_entries(rows, csv_file, "Labelled clips", skipped=rejected)

    return run_prep(os.path.join(save_folder, output), options, build, sources=[csv_file, audio_folder])
