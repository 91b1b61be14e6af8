"""Resuming from checkpoints that a killed run may have left half-written.

SpeechBrain's ``Checkpointer.save_checkpoint`` creates the folder, writes ``CKPT.yaml`` and then one file per
recoverable. A run killed in between leaves a folder that looks like a checkpoint but is not one: an empty
``CKPT.yaml`` makes ``recover_if_possible`` fail with ``TypeError: 'NoneType' object is not subscriptable``, and a
missing or truncated parameter file fails when it is loaded. :func:`set_aside_incomplete_checkpoints` renames such
folders (nothing is deleted) so that the run resumes from the last complete checkpoint.
"""

import logging
import zipfile
from pathlib import Path

import yaml
from speechbrain.utils.checkpoints import CKPT_PREFIX, METAFNAME, PARAMFILE_EXT

logger = logging.getLogger(__name__)

#: prefix given to a checkpoint folder set aside (SpeechBrain only lists folders whose name starts with "CKPT")
INCOMPLETE_PREFIX = "incomplete-"


def checkpoint_problem(folder, recoverables):
    """Why the checkpoint ``folder`` cannot be loaded, or None when it looks complete.

    Parameters
    ----------
    folder : path
        A ``CKPT+...`` folder.
    recoverables : iterable of str
        Names of the objects the checkpointer saves (one ``<name>.ckpt`` file each).

    Returns
    -------
    str or None

    Example
    -------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / METAFNAME).write_text("")
    ...     checkpoint_problem(d, ["decoder"])
    'CKPT.yaml is empty or unreadable'
    """
    folder = Path(folder)
    try:
        meta = yaml.safe_load((folder / METAFNAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        meta = None
    if not isinstance(meta, dict) or "unixtime" not in meta:
        return f"{METAFNAME} is empty or unreadable"
    for name in recoverables:
        path = folder / f"{name}{PARAMFILE_EXT}"
        if not path.is_file() or path.stat().st_size == 0:
            return f"{path.name} is missing or empty"
        with open(path, "rb") as f:
            is_zip = f.read(4) == b"PK\x03\x04"  # torch.save's format
        if is_zip:
            try:
                with zipfile.ZipFile(path) as archive:
                    archive.namelist()  # reads the central directory, which a truncated file lacks
            except (zipfile.BadZipFile, OSError):
                return f"{path.name} is truncated"
    return None


def set_aside_incomplete_checkpoints(checkpointer):
    """Rename the checkpoint folders of ``checkpointer`` that :func:`checkpoint_problem` rejects.

    Each is renamed ``incomplete-CKPT+...`` in the same folder (kept for inspection; SpeechBrain no longer lists
    it), with one warning per folder. Call it before ``recover_if_possible``, on the main process.

    Parameters
    ----------
    checkpointer : speechbrain.utils.checkpoints.Checkpointer

    Returns
    -------
    list of pathlib.Path
        The new paths of the folders set aside.
    """
    root = Path(checkpointer.checkpoints_dir)
    if not root.is_dir():
        return []
    moved = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or not folder.name.startswith(CKPT_PREFIX):
            continue
        problem = checkpoint_problem(folder, checkpointer.recoverables)
        if problem is None:
            continue
        target = folder.with_name(INCOMPLETE_PREFIX + folder.name)
        folder.rename(target)
        logger.warning("Checkpoint %s is incomplete (%s; the run was probably killed while saving it): set aside as "
                       "%s, resuming from the last complete one.", folder.name, problem, target.name)
        moved.append(target)
    return moved
