"""Writing files that are never seen half-written, and remembering what a set of outputs was built with.

Every output of the project that a later run trusts (manifests, results tables, trained models, the synthetic
benchmark's data) is written through :func:`atomic_path` or :func:`atomic_write` and vouched for by a
:class:`BuildStamp`. The stamp is removed before the outputs are rebuilt and written after the last of them, so an
interrupted build is rebuilt on the next run instead of being reused.

>>> import tempfile
>>> folder = tempfile.TemporaryDirectory()
>>> write_json_atomic(f"{folder.name}/a.json", {"b": 1})
>>> open(f"{folder.name}/a.json").read()
'{\\n  "b": 1\\n}'
>>> stamp = BuildStamp(f"{folder.name}/a_options.json")
>>> stamp.matches({"n": 3})
False
>>> stamp.write({"n": 3})
>>> stamp.matches({"n": 3}), stamp.matches({"n": 4}), stamp.matches({"n": 3}, f"{folder.name}/missing.json")
(True, False, False)
>>> folder.cleanup()
"""

import contextlib
import json
import os
import tempfile
from pathlib import Path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; when the block ends without error, rename it to ``path``.

    The data is flushed to disk before the rename, and the file gets the permissions any other new file gets
    (0666 less the umask), not the 0600 of a temporary file. On error the temporary file is removed and ``path``
    is left as it was.

    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> with atomic_path(f"{folder.name}/x.txt") as tmp:
    ...     _ = Path(tmp).write_text("done")
    >>> Path(f"{folder.name}/x.txt").read_text()
    'done'
    >>> folder.cleanup()
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    name, extension = os.path.splitext(os.path.basename(path))
    # The extension stays last: writers such as soundfile pick the format from it.
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=f".tmp-{name}-", suffix=extension)
    os.close(handle)
    try:
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write(path, write, binary=False):
    """Call ``write(file)`` on a temporary file beside ``path`` and rename it to ``path`` when done.

    Parameters
    ----------
    path : str or Path
        Destination; its folder must exist.
    write : callable
        Receives the open file (text, UTF-8, ``newline=""`` so that the csv module controls line ends; or binary).
    binary : bool
        Open the file in binary mode.
    """
    with atomic_path(path) as tmp:
        if binary:
            with open(tmp, "wb") as fout:
                write(fout)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as fout:
                write(fout)


def write_json_atomic(path, data, **dump_options):
    """Write ``data`` as indented JSON (non-ASCII kept as is) through :func:`atomic_write`."""
    dump_options = {"indent": 2, "ensure_ascii": False, **dump_options}
    atomic_write(path, lambda fout: json.dump(data, fout, **dump_options))


def write_text_atomic(path, text):
    """Write ``text`` (UTF-8) through :func:`atomic_write`."""
    atomic_write(path, lambda fout: fout.write(text))


def _as_json(options):
    # Tuples become lists, keys are sorted: stored and requested options compare equal.
    return json.loads(json.dumps(options, sort_keys=True))


class BuildStamp:
    """The options a set of outputs was built with, in a JSON file written after the outputs.

    Use: ``if stamp.matches(options, *outputs): reuse`` else ``stamp.clear()``, build the outputs, then
    ``stamp.write(options)``.

    Parameters
    ----------
    path : str or Path
        The stamp file.
    """

    def __init__(self, path):
        self.path = Path(path)

    def read(self):
        """The stored options, or None when there is no readable stamp."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def matches(self, options, *outputs):
        """True when the stamp holds exactly ``options`` and every path in ``outputs`` exists."""
        if not all(Path(output).exists() for output in outputs):
            return False
        stored = self.read()
        return stored is not None and stored == _as_json(options)

    def clear(self):
        """Remove the stamp: from now on the outputs are not trusted until :meth:`write` is called again."""
        self.path.unlink(missing_ok=True)

    def write(self, options):
        """Record ``options`` (call it after the last output is written)."""
        write_json_atomic(self.path, _as_json(options))


class NotWritableError(PermissionError):
    """An output folder that cannot be created or written; the message names it and why."""


def check_writable_folder(folder, option="the output folder"):
    """Make sure ``folder`` can be created (or exists) and holds new files, before any work is done.

    Tries it: the missing folders are created, a temporary file is written and removed, and the folders this check
    created are removed again, so a refused run leaves nothing behind. Trying (instead of asking ``os.access``)
    also catches what permission bits do not tell: a read-only mount, ``/proc``, or a path under a plain file,
    and it holds for root too.

    Parameters
    ----------
    folder : str or Path
        The folder the outputs go to.
    option : str
        How the user named it (``--out``, ``--output_folder``), for the message.

    Raises
    ------
    NotWritableError
        One line: the folder, and why it cannot be written.

    >>> import tempfile
    >>> base = tempfile.TemporaryDirectory()
    >>> check_writable_folder(f"{base.name}/a/b")
    >>> os.path.exists(f"{base.name}/a")
    False
    >>> _ = Path(f"{base.name}/file").write_text("x")
    >>> check_writable_folder(f"{base.name}/file/out", "--out")
    Traceback (most recent call last):
    ...
    speechbrain_lmaczs.files.NotWritableError: --out .../file/out cannot be written: .../file is a file, not a folder.
    >>> base.cleanup()
    """
    folder = os.path.abspath(os.fspath(folder))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotWritableError(f"{option} {folder} cannot be written: {existing} is a file, not a folder.")
    created = []
    try:
        parent = existing
        for part in Path(os.path.relpath(folder, existing)).parts if folder != existing else ():
            parent = os.path.join(parent, part)
            try:
                os.mkdir(parent)
            except FileExistsError:
                continue  # made meanwhile by another process (two runs into sibling folders): not ours to remove
            created.append(parent)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        reason = err.strerror or str(err)
        raise NotWritableError(f"{option} {folder} cannot be written: {reason}.") from None
    finally:
        for path in reversed(created):
            with contextlib.suppress(OSError):
                os.rmdir(path)
