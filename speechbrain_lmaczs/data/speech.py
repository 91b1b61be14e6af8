"""Speech for the "speech" contamination condition: LJSpeech, or any folder of speech files.

The manifest (entries ``{"wav", "duration"}``) is the pool a :class:`~speechbrain_lmaczs.data.Contaminator`
draws from.
"""

import logging
import os

from speechbrain_lmaczs.data.download import download_file, extract_archive, is_empty_folder
from speechbrain_lmaczs.data.manifest import (
    AUDIO_EXTENSIONS,
    DataPrepError,
    MissingDataError,
    audio_entries,
    find_audio_files,
    item_id,
    require_folder,
    run_prep,
)

logger = logging.getLogger(__name__)

#: LJ Speech 1.1 (public domain, 2.6 GB) and its published SHA-256
LJSPEECH_URL = "https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2"
LJSPEECH_SHA256 = "be1a30453f28eb8dd26af4101ae40cbf2c50413b1bb21936cbcdc6fae3de8aa5"


def folder_entries(folder, extensions=AUDIO_EXTENSIONS):
    """Entries ``{"wav", "duration"}`` of every usable audio file under ``folder``, ids from relative paths."""
    files = find_audio_files(folder, extensions)
    if not files:
        raise DataPrepError(f"No audio files ({', '.join(extensions)}) under {folder}: check the folder.")
    rows = [(item_id(rel), os.path.join(folder, rel), {}) for rel in files]
    return audio_entries(rows, folder, "Audio files")


def prepare_speech(data_folder, save_folder, output="speech.json", extensions=AUDIO_EXTENSIONS):
    """Write a manifest of every speech file (WAV, FLAC, OGG) found recursively under ``data_folder``.

    Parameters
    ----------
    data_folder : str
        Folder of speech files (any depth).
    save_folder : str
        Where the manifest goes.
    output : str
        Manifest file name.
    extensions : sequence of str
        File suffixes to pick up.

    Returns
    -------
    str
        Path of the manifest.
    """
    data_folder = os.path.abspath(data_folder)
    require_folder(data_folder, "Speech folder")
    extensions = [e.lower() for e in extensions]
    options = {"dataset": "speech", "data_folder": data_folder, "extensions": extensions}
    return run_prep(
        os.path.join(save_folder, output),
        options,
        lambda: folder_entries(data_folder, extensions),
        sources=[data_folder],
        extensions=extensions,
    )


def find_ljspeech_wavs(data_folder):
    """``wavs/`` of LJSpeech in ``data_folder`` or in its ``LJSpeech-1.1/`` subfolder; None when absent."""
    for candidate in (data_folder, os.path.join(data_folder, "LJSpeech-1.1")):
        if os.path.isdir(os.path.join(candidate, "wavs")):
            return os.path.join(candidate, "wavs")
    return None


def download_ljspeech(data_folder, url=LJSPEECH_URL):
    """Download LJ Speech 1.1 into ``data_folder``, check its SHA-256, unpack it; returns its ``wavs/`` folder."""
    os.makedirs(data_folder, exist_ok=True)
    archive = os.path.join(data_folder, ".download-LJSpeech-1.1.tar.bz2")
    download_file(url, archive, checksum=f"sha256:{LJSPEECH_SHA256}")
    extract_archive(archive, data_folder)
    wavs = find_ljspeech_wavs(data_folder)
    if wavs is None:
        raise DataPrepError(f"The archive from {url} holds no LJSpeech-1.1/wavs/: is the URL right?")
    os.remove(archive)
    return wavs


def prepare_ljspeech(data_folder, save_folder, output="speech.json", download=True, url=LJSPEECH_URL):
    """Write the speech manifest of LJ Speech 1.1, downloading it into an empty ``data_folder``.

    Parameters
    ----------
    data_folder : str
        Folder holding ``wavs/`` (or ``LJSpeech-1.1/wavs/``); if it is empty or missing, the dataset is
        downloaded into it (2.6 GB) when ``download`` is True.
    save_folder : str
        Where the manifest goes.
    output : str
        Manifest file name.
    download : bool
        Whether an empty ``data_folder`` may be filled by downloading (False raises instead).
    url : str
        Where the archive is (a mirror must serve the same file: its SHA-256 is checked).

    Returns
    -------
    str
        Path of the manifest.
    """
    data_folder = os.path.abspath(data_folder)
    options = {"dataset": "ljspeech", "data_folder": data_folder}

    def build():
        wavs = find_ljspeech_wavs(data_folder)
        if wavs is None:
            if not is_empty_folder(data_folder):
                raise MissingDataError(
                    f"{data_folder} is not empty but holds no wavs/ (nor LJSpeech-1.1/wavs/): pass the unpacked "
                    "LJSpeech folder, or an empty folder to download it into."
                )
            if not download:
                raise MissingDataError(f"LJSpeech is not in {data_folder}: set download=True or unpack it there.")
            wavs = download_ljspeech(data_folder, url)
        return folder_entries(wavs, (".wav",))

    return run_prep(os.path.join(save_folder, output), options, build, sources=[data_folder])
