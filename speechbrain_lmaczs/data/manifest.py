"""Shared machinery of every data preparation: reading CSVs, probing audio, writing manifests safely.

A manifest is a JSON file keyed by item id (SpeechBrain convention)::

    {"1-100032-A-0": {"wav": "/data/ESC50/audio/1-100032-A-0.wav", "duration": 5.0,
                      "class_string": "dog", "classID": 0, "fold": 1}}

Next to ``name.json`` each prep writes ``name_options.json`` with the options it ran with (a
:class:`~speechbrain_lmaczs.files.BuildStamp`) and a fingerprint of its sources (:func:`source_fingerprint`: the
contents of its CSV files, the names, sizes and modification times of its audio files). A later run with the same
options on unchanged sources finds both and does nothing; any other state (missing options file, different
options, an edited CSV, an added, deleted or rewritten audio file, manifest missing) makes it rebuild. The manifest is
written to a temporary file and renamed, and the options file is removed before and written after it, so an
interrupted run never leaves a manifest that a later run trusts.
"""

import hashlib
import logging
import os

import soundfile as sf

from speechbrain_lmaczs.files import BuildStamp, write_json_atomic

logger = logging.getLogger(__name__)

#: bumped when the manifest layout changes, so that old manifests are rebuilt
MANIFEST_FORMAT = 1

#: audio files a folder scan picks up (lower-case suffixes)
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


class DataPrepError(RuntimeError):
    """Something about the data the user gave is wrong; the message says what to do."""


class MissingDataError(DataPrepError, FileNotFoundError):
    """A folder or file the prep needs is not there; the message says what to do."""


def item_id(relative_path):
    """Manifest id of an audio file: its path relative to the audio folder, without suffix, ``/`` -> ``-``.

    >>> item_id("1-100032-A-0.wav")
    '1-100032-A-0'
    >>> item_id("fold1/101415-3-0-2.wav")
    'fold1-101415-3-0-2'
    """
    stem = os.path.splitext(os.path.normpath(relative_path))[0]
    return stem.replace(os.sep, "-").replace("/", "-")


def find_audio_files(folder, extensions=AUDIO_EXTENSIONS):
    """Audio files under ``folder``, searched recursively, as sorted paths relative to it.

    Hidden files and folders (partial downloads, ``.DS_Store``) are left out.

    Parameters
    ----------
    folder : str
        Folder to search.
    extensions : sequence of str
        Suffixes to keep, compared case-insensitively.

    Returns
    -------
    list of str
    """
    extensions = tuple(e.lower() for e in extensions)
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.lower().endswith(extensions):
                found.append(os.path.relpath(os.path.join(parent, name), folder))
    return sorted(found)


def probe_audio(path):
    """Duration of an audio file, or the reason it cannot be used.

    Durations come from the file header through soundfile (``frames / samplerate``).

    Parameters
    ----------
    path : str
        Audio file.

    Returns
    -------
    duration : float or None
        Seconds, or None when the file cannot be used.
    reason : str or None
        Why the file cannot be used (``"missing"``, ``"empty file"``, ``"unreadable: ..."``,
        ``"zero-length audio"``), None when it can.

    Example
    -------
    >>> probe_audio("no/such/file.wav")
    (None, 'missing')
    """
    if not os.path.isfile(path):
        return None, "missing"
    if os.path.getsize(path) == 0:
        return None, "empty file"
    try:
        info = sf.info(path)
    except (RuntimeError, OSError, ValueError) as err:
        # soundfile raises LibsndfileError (a RuntimeError) for anything it cannot decode
        return None, f"unreadable: {err}"
    if info.frames <= 0 or info.samplerate <= 0:
        return None, "zero-length audio"
    return info.frames / info.samplerate, None


#: problems a warning lists by name (the count covers them all)
MAX_EXAMPLES = 5


def report_skipped(skipped, total, source):
    """Log the skipped items in one warning: their count first, then up to :data:`MAX_EXAMPLES` of them.

    Parameters
    ----------
    skipped : list of (str, str)
        (name, reason) pairs.
    total : int
        Number of items considered.
    source : str
        What was being read (a CSV or a folder), named in the message.
    """
    if not skipped:
        return
    # One line per distinct problem: a missing Clotho clip would otherwise be listed once per caption.
    counts = {}
    for name, reason in skipped:
        counts[(name, reason)] = counts.get((name, reason), 0) + 1
    lines = [f"  {name}: {reason}" + (f" ({n} items)" if n > 1 else "") for (name, reason), n in counts.items()]
    if len(lines) > MAX_EXAMPLES:
        lines = lines[:MAX_EXAMPLES] + [f"  ... and {len(lines) - MAX_EXAMPLES} more"]
    logger.warning("Skipped %d of %d items of %s:\n%s", len(skipped), total, source, "\n".join(lines))


def require_folder(folder, what):
    """Raise :class:`MissingDataError` unless ``folder`` is a directory."""
    if not os.path.isdir(folder):
        raise MissingDataError(f"{what} {folder!r} does not exist (or is not a folder): check the path.")


def read_csv(csv_file, required_columns, what="CSV file"):
    """Read a CSV with every column as text, after checking the file and its columns.

    Empty cells become empty strings (not NaN), so that a caption such as "None" stays a caption.

    Parameters
    ----------
    csv_file : str
        Path of the CSV file.
    required_columns : list of str
        Columns that must be present.
    what : str
        How to name the file in error messages.

    Returns
    -------
    pandas.DataFrame
    """
    import pandas as pd

    if not os.path.isfile(csv_file):
        raise MissingDataError(f"{what} {csv_file!r} does not exist: check the path.")
    try:
        frame = pd.read_csv(csv_file, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataPrepError(
            f"Could not read {what} {csv_file!r} ({err}): is it a UTF-8 CSV with a header row?"
        ) from err
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required_columns if c not in frame.columns]
    if missing:
        raise DataPrepError(
            f"{what} {csv_file!r} lacks the column(s) {missing}; it has {list(frame.columns)}. "
            "Rename the columns or pass the right column names."
        )
    return frame


def parse_int(value, column, csv_file):
    """An integer cell of a CSV, with a clear error when it is not one."""
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is None or not number.is_integer():
        raise DataPrepError(f"Column {column!r} of {csv_file!r} must hold integers, found {value!r}.")
    return int(number)


def check_folds(folds, available, dataset):
    """Validate a fold selection: None (every fold) or a list of folds the dataset has.

    Returns
    -------
    list of int or None
        The sorted, de-duplicated folds.
    """
    if folds is None:
        return None
    if isinstance(folds, (int, str)):
        folds = [folds]
    folds = sorted({int(f) for f in folds})
    unknown = [f for f in folds if f not in set(available)]
    if unknown or not folds:
        raise DataPrepError(f"{dataset} has folds {sorted(set(available))}; got {folds}. Choose among those.")
    return folds


def options_path(manifest_path):
    """The file that stores the options a manifest was built with: ``name.json`` -> ``name_options.json``."""
    root, _ = os.path.splitext(manifest_path)
    return root + "_options.json"


def build_stamp(manifest_path):
    """The :class:`~speechbrain_lmaczs.files.BuildStamp` of a manifest (its :func:`options_path`)."""
    return BuildStamp(options_path(manifest_path))


def _stamped(options):
    # The layout version is part of the options: a manifest of an older layout is rebuilt.
    return dict(options, format=MANIFEST_FORMAT)


def is_prepared(manifest_path, options):
    """True when ``manifest_path`` exists and was built with exactly these options."""
    return build_stamp(manifest_path).matches(_stamped(options), manifest_path)


def write_manifest(manifest_path, entries, options):
    """Write a manifest and the options it was built with, so that no interruption leaves a trusted half-file.

    Parameters
    ----------
    manifest_path : str
        Destination ``.json``.
    entries : dict
        id -> entry.
    options : dict
        JSON-serializable options of the prep (compared by :func:`is_prepared` on the next run).
    """
    os.makedirs(os.path.dirname(os.path.abspath(manifest_path)), exist_ok=True)
    stamp = build_stamp(manifest_path)
    # Removed first: if we stop between the two writes, the old options must not vouch for a new manifest.
    stamp.clear()
    write_json_atomic(manifest_path, entries)
    stamp.write(_stamped(options))
    logger.info("Wrote %d items to %s", len(entries), manifest_path)


def _file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fin:
        for block in iter(lambda: fin.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_fingerprint(paths, extensions=AUDIO_EXTENSIONS):
    """A cheap fingerprint of what a preparation reads: it changes when a source changes.

    A file (a CSV) counts by its contents (SHA-256); a folder by its audio files (``extensions``), each by relative
    path, size and modification time (one ``stat``, no audio read), and by the contents of its CSV files. A path
    that does not exist counts as missing.

    Parameters
    ----------
    paths : sequence of str
        The CSV files and folders the preparation reads.
    extensions : sequence of str
        Audio file suffixes of the folders.

    Returns
    -------
    str
        Hex SHA-256.

    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> _ = open(f"{folder.name}/a.csv", "w").write("filename,label\\nx.wav,dog\\n")
    >>> before = source_fingerprint([folder.name])
    >>> before == source_fingerprint([folder.name])
    True
    >>> _ = open(f"{folder.name}/a.csv", "w").write("filename,label\\nx.wav,cat\\n")
    >>> before == source_fingerprint([folder.name])
    False
    >>> folder.cleanup()
    """
    extensions = tuple(e.lower() for e in extensions)
    digest = hashlib.sha256()
    for path in paths:
        path = os.path.abspath(path)
        if os.path.isfile(path):
            digest.update(f"file {path} {_file_digest(path)}\n".encode())
        elif os.path.isdir(path):
            digest.update(f"folder {path}\n".encode())
            for name in find_audio_files(path, extensions + (".csv",)):
                full = os.path.join(path, name)
                if name.lower().endswith(".csv"):
                    digest.update(f"csv {name} {_file_digest(full)}\n".encode())
                else:
                    stat = os.stat(full)
                    digest.update(f"audio {name} {stat.st_size} {stat.st_mtime_ns}\n".encode())
        else:
            digest.update(f"missing {path}\n".encode())
    return digest.hexdigest()


def run_prep(manifest_path, options, build, sources=(), extensions=AUDIO_EXTENSIONS):
    """Build a manifest unless an identical one exists, built from the same sources.

    Parameters
    ----------
    manifest_path : str
        Destination ``.json``.
    options : dict
        Everything that changes the content of the manifest.
    build : callable
        No-argument function returning the entries (id -> dict).
    sources : sequence of str
        The CSV files and folders ``build`` reads; their :func:`source_fingerprint` is recorded with the options,
        so an edited CSV or a deleted audio file rebuilds the manifest.
    extensions : sequence of str
        Audio suffixes the fingerprint of a folder counts.

    Returns
    -------
    str
        ``manifest_path``.
    """
    if is_prepared(manifest_path, dict(options, sources=source_fingerprint(sources, extensions))):
        logger.info("%s is up to date (same options, unchanged sources): skipping preparation.", manifest_path)
        return manifest_path
    entries = build()
    if not entries:
        raise DataPrepError(
            f"No usable audio for {manifest_path}: every item was skipped (see the warning above). "
            "Check the data folder and CSV."
        )
    # Fingerprinted after the build: a download may have filled the data folder.
    write_manifest(manifest_path, entries, dict(options, sources=source_fingerprint(sources, extensions)))
    return manifest_path


def folded_csv_rows(frame, csv_file, folds, filename_column, audio_path, fields):
    """(id, path, extra) rows of a metadata CSV with an integer ``fold`` column, for :func:`audio_entries`.

    Parameters
    ----------
    frame : pandas.DataFrame
        The CSV (:func:`read_csv`).
    csv_file : str
        Its path, named in errors and in the id of a row without a file name (reported, then skipped).
    folds : list of int or None
        Folds to keep (None: every row).
    filename_column : str
        Column with the audio file names.
    audio_path : callable
        ``audio_path(filename, fold)`` -> path of the file.
    fields : callable
        ``fields(record, fold)`` -> the entry's other fields (a dict, in manifest order).

    Returns
    -------
    list of (str, str, dict)
    """
    rows = []
    for line, record in enumerate(frame.to_dict("records"), start=2):
        fold = parse_int(record["fold"], "fold", csv_file)
        if folds is not None and fold not in folds:
            continue
        filename = record[filename_column].strip()
        extra = fields(record, fold)
        if filename:
            rows.append((item_id(filename), audio_path(filename, fold), extra))
        else:
            rows.append((f"{csv_file} line {line}", "", extra))
    return rows


def audio_entries(rows, source, desc, skipped=None):
    """Probe the audio of each row and keep the usable ones.

    Parameters
    ----------
    rows : iterable of (str, str, dict)
        (id, path, extra fields) per item; several items may share one path (probed once). An empty path
        stands for a CSV row that names no file: it is reported (under its id) and skipped.
    source : str
        What the rows come from, for the warning about skipped items.
    desc : str
        Progress bar label.
    skipped : list of (str, str), optional
        Items the caller already rejected (e.g. rows with an empty label), reported in the same warning.

    Returns
    -------
    dict
        id -> {"wav": absolute path, "duration": seconds, **extra}.
    """
    from tqdm import tqdm

    rows = list(rows)
    rejected = list(skipped or [])
    entries, probed = {}, {}
    for key, path, extra in tqdm(rows, desc=desc, unit="item", dynamic_ncols=True):
        if not path:
            rejected.append((key, "CSV row without a file name"))
            continue
        path = os.path.abspath(path)
        if path not in probed:
            probed[path] = probe_audio(path)
        duration, reason = probed[path]
        if reason is not None:
            rejected.append((path, reason))
            continue
        if key in entries:
            rejected.append((path, f"duplicate id {key!r}"))
            continue
        entries[key] = {"wav": path, "duration": round(duration, 6), **extra}
    report_skipped(rejected, len(rows) + len(skipped or []), source)
    return entries
