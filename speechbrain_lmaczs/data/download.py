"""Downloading and unpacking dataset archives, with progress bars and checks of the result.

Every step is all-or-nothing: a download goes to ``name.part`` and is renamed only once its size (and checksum,
when one is known) match; an archive is unpacked into a hidden staging folder whose top-level entries are moved
into place only when unpacking has finished. An interrupted run therefore leaves nothing that looks complete.
"""

import hashlib
import http.client
import logging
import os
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request
import zipfile

from speechbrain_lmaczs.data.manifest import DataPrepError

logger = logging.getLogger(__name__)

_SEVEN_ZIP_COMMANDS = ("7z", "7za", "7zz")
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def is_empty_folder(folder):
    """True when ``folder`` does not exist or holds only hidden entries (our partial downloads, ``.DS_Store``).

    >>> is_empty_folder("no/such/folder")
    True
    """
    if not os.path.isdir(folder):
        return True
    return all(name.startswith(".") for name in os.listdir(folder))


def _hasher(checksum):
    if checksum is None:
        return None, None
    algorithm, _, digest = checksum.partition(":")
    if not digest or algorithm not in hashlib.algorithms_available:
        raise ValueError(f"checksum must look like 'md5:<hex>' or 'sha256:<hex>', got {checksum!r}.")
    return hashlib.new(algorithm), digest.lower()


def download_file(url, destination, checksum=None, chunk_size=1 << 20, timeout=60):
    """Download ``url`` to ``destination`` with a progress bar, then check what arrived.

    The size is compared with the server's Content-Length (a cut connection is caught) and, when given, the
    checksum with the data. A ``destination`` that already exists passed these checks on an earlier run and is
    reused.

    Parameters
    ----------
    url : str
        ``https://``, ``http://`` or ``file://`` URL.
    destination : str
        File to write.
    checksum : str, optional
        ``"md5:<hex>"`` or ``"sha256:<hex>"``.
    chunk_size : int
        Bytes read at a time.
    timeout : float
        Seconds to wait for the server.

    Returns
    -------
    str
        ``destination``.
    """
    if os.path.isfile(destination):
        logger.info("Reusing %s (downloaded and checked earlier).", destination)
        return destination
    from tqdm import tqdm

    hasher, expected_digest = _hasher(checksum)
    os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
    part = destination + ".part"
    logger.info("Downloading %s to %s", url, destination)
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length else None
            with open(part, "wb") as out, tqdm(
                total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=os.path.basename(destination)
            ) as bar:
                while True:
                    chunk = response.read(chunk_size)
                    if not chunk:
                        break
                    out.write(chunk)
                    if hasher is not None:
                        hasher.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        _remove(part)
        raise DataPrepError(
            f"Could not download {url} ({err}). Check the network, or download the file yourself to "
            f"{destination} and run again."
        ) from err
    except BaseException:
        _remove(part)
        raise
    problem = None
    if received == 0:
        problem = "the server sent no data"
    elif expected is not None and received != expected:
        problem = f"received {received} of {expected} bytes (connection cut?)"
    elif hasher is not None and hasher.hexdigest() != expected_digest:
        problem = f"checksum {hasher.hexdigest()} differs from the published {expected_digest}"
    if problem is not None:
        _remove(part)
        raise DataPrepError(f"Download of {url} failed its check: {problem}. Run again to retry.")
    os.replace(part, destination)
    return destination


def _remove(path):
    if os.path.exists(path):
        os.remove(path)


def seven_zip_available():
    """True when ``.7z`` archives can be unpacked here (the ``py7zr`` package or a ``7z`` command)."""
    try:
        import py7zr  # noqa: F401

        return True
    except ImportError:
        return any(shutil.which(cmd) for cmd in _SEVEN_ZIP_COMMANDS)


def _extract_7z(archive, folder):
    try:
        import py7zr
    except ImportError:
        py7zr = None
    if py7zr is not None:
        with py7zr.SevenZipFile(archive, mode="r") as z:
            z.extractall(path=folder)
        return
    command = next((shutil.which(cmd) for cmd in _SEVEN_ZIP_COMMANDS if shutil.which(cmd)), None)
    if command is None:
        raise DataPrepError(
            f"Unpacking {archive} needs 7-Zip: `pip install py7zr` or install the 7z command "
            "(e.g. `apt-get install p7zip-full`), or unpack it yourself and run again."
        )
    subprocess.run([command, "x", "-y", f"-o{folder}", archive], check=True, stdout=subprocess.DEVNULL)


def _extract_zip(archive, folder):
    from tqdm import tqdm

    with zipfile.ZipFile(archive) as zf:
        # Reading each member checks its CRC: a corrupt archive raises BadZipFile here.
        for member in tqdm(zf.infolist(), desc=f"Unpacking {os.path.basename(archive)}", unit="file"):
            zf.extract(member, folder)


def _extract_tar(archive, folder):
    from tqdm import tqdm

    with tarfile.open(archive, "r:*") as tf:
        for member in tqdm(tf, desc=f"Unpacking {os.path.basename(archive)}", unit="file"):
            # "data" refuses absolute paths, links out of the folder and device files.
            tf.extract(member, folder, filter="data")


def extract_archive(archive, destination):
    """Unpack a ``.zip``, ``.tar(.gz|.bz2|.xz)`` or ``.7z`` archive into ``destination``, all or nothing.

    Parameters
    ----------
    archive : str
        The archive file.
    destination : str
        Folder that receives the archive's top-level entries; none of them may exist there already.

    Returns
    -------
    list of str
        The top-level entries now in ``destination``.
    """
    name = os.path.basename(archive)
    staging = os.path.join(destination, f".extracting-{name}")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    lower = name.lower()
    try:
        try:
            if lower.endswith(".zip"):
                _extract_zip(archive, staging)
            elif lower.endswith(".7z"):
                _extract_7z(archive, staging)
            elif lower.endswith(_TAR_SUFFIXES) or tarfile.is_tarfile(archive):
                _extract_tar(archive, staging)
            else:
                raise DataPrepError(f"Do not know how to unpack {archive}: expected .zip, .tar.* or .7z.")
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, subprocess.CalledProcessError) as err:
            if isinstance(err, OSError) and err.errno is not None:
                raise  # a real I/O problem (disk full, permissions), not a damaged archive
            raise DataPrepError(
                f"Could not unpack {archive} ({err}): the file is damaged. Delete it and run again to download "
                "it anew."
            ) from err
        entries = sorted(os.listdir(staging))
        clashes = [e for e in entries if os.path.exists(os.path.join(destination, e))]
        if clashes:
            raise DataPrepError(
                f"Unpacking {archive} would overwrite {clashes} in {destination}: move them away and run again."
            )
        for entry in entries:
            os.replace(os.path.join(staging, entry), os.path.join(destination, entry))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("Unpacked %s into %s", archive, destination)
    return entries
