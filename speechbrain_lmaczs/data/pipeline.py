"""From a manifest to a SpeechBrain ``DynamicItemDataset`` of fixed-length mono clips.

Each clip is read, downmixed to mono, resampled to the backend's rate, brought to the backend's clip length
(repeated when short; cropped when long: a random window for training, the centre for evaluation) and
peak-normalised with an epsilon, so that a silent clip stays finite.
"""

import json
import logging
import math
import os
import random

import soundfile as sf
import torch
import torchaudio

from speechbrain_lmaczs.classifier import DEFAULT_TEMPLATE, make_prompts
from speechbrain_lmaczs.data.manifest import DataPrepError, MissingDataError

logger = logging.getLogger(__name__)

#: added to the peak before dividing, so that silence stays silence (not NaN)
PEAK_EPS = 1e-8


def load_audio(path, sample_rate):
    """Read an audio file as a mono float32 waveform at ``sample_rate``.

    Parameters
    ----------
    path : str
        WAV, FLAC, OGG or any format libsndfile reads.
    sample_rate : int
        Rate to resample to.

    Returns
    -------
    torch.Tensor
        (samples,) float32; channels are averaged.
    """
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as err:
        raise DataPrepError(f"Could not read {path} ({err}): re-run the data preparation to drop bad files.") from err
    wav = torch.from_numpy(data).mean(dim=1)
    if rate != sample_rate:
        wav = torchaudio.functional.resample(wav, rate, sample_rate)
    return wav


def fix_length(wav, length, random_crop=False):
    """Bring a (samples,) waveform to ``length`` samples.

    A short clip is repeated end to end (not zero-padded, so the model sees sound throughout); a long one is
    cropped, at a random offset (torch's global generator) when ``random_crop`` else around its centre.

    Parameters
    ----------
    wav : torch.Tensor
        (samples,) waveform.
    length : int
        Samples wanted.
    random_crop : bool
        Random window (training) instead of the centred one (evaluation).

    Returns
    -------
    torch.Tensor
        (length,) waveform.

    Example
    -------
    >>> fix_length(torch.tensor([1.0, 2.0, 3.0]), 7)
    tensor([1., 2., 3., 1., 2., 3., 1.])
    >>> fix_length(torch.arange(6.0), 2)
    tensor([2., 3.])
    """
    n = wav.shape[-1]
    if n == 0:
        return wav.new_zeros(length)
    if n < length:
        return wav.repeat(math.ceil(length / n))[:length]
    if n == length:
        return wav
    if random_crop:
        start = int(torch.randint(0, n - length + 1, (1,)))
    else:
        start = (n - length) // 2
    return wav[start : start + length]


def peak_normalize(wav, eps=PEAK_EPS):
    """Divide by the peak magnitude plus ``eps``: the peak becomes (almost) 1, silence stays 0.

    >>> peak_normalize(torch.tensor([0.5, -2.0]), eps=0.0)
    tensor([ 0.2500, -1.0000])
    >>> peak_normalize(torch.zeros(3))
    tensor([0., 0., 0.])
    """
    return wav / (wav.abs().max() + eps)


def load_clip(path, sample_rate, clip_samples, random_crop=False):
    """:func:`load_audio`, then :func:`fix_length`, then :func:`peak_normalize`."""
    return peak_normalize(fix_length(load_audio(path, sample_rate), clip_samples, random_crop))


def read_manifest(manifest, replacements=None):
    """Load a manifest (a path or an already loaded dict), filling ``{placeholders}`` in its ``wav`` paths.

    Parameters
    ----------
    manifest : str or dict
        Path of a JSON manifest, or its content.
    replacements : dict, optional
        ``{"data_root": "/data/ESC50"}`` turns ``{data_root}/audio/x.wav`` into ``/data/ESC50/audio/x.wav``.
        Only ``wav`` is touched (a caption may contain braces).

    Returns
    -------
    dict
        id -> entry (a copy).
    """
    if isinstance(manifest, (str, os.PathLike)):
        if not os.path.isfile(manifest):
            raise MissingDataError(f"Manifest {manifest!r} does not exist: run the data preparation first.")
        with open(manifest, encoding="utf-8") as f:
            data = json.load(f)
    else:
        data = {key: dict(entry) for key, entry in manifest.items()}
    if not data:
        raise DataPrepError(f"Manifest {manifest!r} is empty.")
    for key, entry in data.items():
        if "wav" not in entry:
            raise DataPrepError(f"Entry {key!r} of manifest {manifest!r} has no 'wav'.")
        for name, value in (replacements or {}).items():
            entry["wav"] = entry["wav"].replace("{" + name + "}", str(value))
    return data


def subset(manifest, max_items, seed):
    """At most ``max_items`` entries of a manifest, drawn with ``seed`` (all of them when None).

    >>> manifest = {f"clip{i}": {"wav": f"{i}.wav"} for i in range(5)}
    >>> sorted(subset(manifest, 2, seed=0)) == sorted(subset(manifest, 2, seed=0)), len(subset(manifest, None, 0))
    (True, 5)
    """
    data = read_manifest(manifest)
    if max_items is None or max_items >= len(data):
        return data
    keys = sorted(random.Random(seed).sample(sorted(data), int(max_items)))
    return {k: data[k] for k in keys}


def class_names(manifest, replacements=None):
    """Class names of a labelled manifest, ordered by ``classID`` (only the classes present).

    Feed them to :func:`speechbrain_lmaczs.classifier.make_prompts`; an item's ``label`` (see
    :func:`make_dataset`) indexes this list.

    Parameters
    ----------
    manifest : str or dict
        Path of a JSON manifest, or its content.
    replacements : dict, optional
        As in :func:`read_manifest`.

    Returns
    -------
    list of str

    Example
    -------
    >>> class_names({"a": {"wav": "a.wav", "class_string": "dog", "classID": 0},
    ...              "b": {"wav": "b.wav", "class_string": "car_horn", "classID": 43}})
    ['dog', 'car_horn']
    """
    data = read_manifest(manifest, replacements)
    names = {}
    for key, entry in data.items():
        if "class_string" not in entry or "classID" not in entry:
            raise DataPrepError(f"Entry {key!r} has no class_string/classID: is this a labelled manifest?")
        cid, name = int(entry["classID"]), entry["class_string"]
        if names.setdefault(cid, name) != name:
            raise DataPrepError(f"classID {cid} names two classes, {names[cid]!r} and {name!r}: fix the CSV.")
    return [names[cid] for cid in sorted(names)]


def _has_key(data, keys, what):
    """True when every entry has ``keys``, False when none has them; an error when only some do."""
    counts = sum(all(k in entry for k in keys) for entry in data.values())
    if 0 < counts < len(data):
        raise DataPrepError(f"Only {counts} of {len(data)} manifest entries have {what}: rebuild the manifest.")
    return counts == len(data)


def make_dataset(
    manifest,
    sample_rate,
    clip_samples,
    train=False,
    replacements=None,
    template=DEFAULT_TEMPLATE,
    labels=None,
    contaminator=None,
):
    """A ``DynamicItemDataset`` of fixed-length mono clips, with captions and labels when the manifest has them.

    Items always have ``"id"`` and ``"wav"`` ((clip_samples,) float32, peak-normalised). Caption manifests add
    ``"caption"``. Labelled manifests (``class_string``/``classID``) add ``"class_string"``, ``"classID"``,
    ``"label"`` (index into ``labels``) and ``"caption"`` (the manifest's own caption if it has one, else
    ``template`` filled with the class name).

    Parameters
    ----------
    manifest : str or dict
        Path of a JSON manifest (or its content).
    sample_rate : int
        Rate of the CLAP backend (``clap.sample_rate``).
    clip_samples : int
        Samples per clip (``clap.clip_samples``, e.g. 5 s at 44.1 kHz = 220500).
    train : bool
        Random crop of long clips (training) instead of the deterministic centre crop (evaluation).
    replacements : dict, optional
        Fills ``{placeholders}`` in the ``wav`` paths.
    template : str
        Prompt template for captions built from class names.
    labels : list of str, optional
        Class names that ``label`` indexes; defaults to :func:`class_names` of the manifest.
    contaminator : Contaminator, optional
        Applied to each clip after normalisation (out-of-domain evaluation).

    Returns
    -------
    speechbrain.dataio.dataset.DynamicItemDataset
    """
    from speechbrain.dataio.dataset import DynamicItemDataset
    from speechbrain.utils.data_pipeline import provides, takes

    data = read_manifest(manifest, replacements)
    has_labels = _has_key(data, ("class_string", "classID"), "class_string and classID")
    has_captions = _has_key(data, ("caption",), "a caption")
    if contaminator is not None and contaminator.clip_samples != clip_samples:
        raise ValueError(
            f"The contaminator makes {contaminator.clip_samples}-sample clips, the dataset {clip_samples}."
        )
    if has_labels:
        names = list(labels) if labels is not None else class_names(data)
        index = {name: i for i, name in enumerate(names)}
        unknown = sorted({e["class_string"] for e in data.values()} - set(index))
        if unknown:
            raise DataPrepError(f"Classes {unknown} of the manifest are not in labels={names}.")
    # The manifest's "wav" is a path; the item's "wav" is the waveform, so the path moves to another key.
    for entry in data.values():
        entry["path"] = entry.pop("wav")
    dataset = DynamicItemDataset(data)

    @takes("id", "path")
    @provides("wav")
    def audio_pipeline(uid, path):
        wav = load_clip(path, sample_rate, clip_samples, random_crop=train)
        return wav if contaminator is None else contaminator(wav, uid)

    dataset.add_dynamic_item(audio_pipeline)
    keys = ["id", "wav"]
    if has_labels:

        @takes("class_string")
        @provides("label")
        def label_pipeline(class_string):
            return index[class_string]

        dataset.add_dynamic_item(label_pipeline)
        keys += ["class_string", "classID", "label"]
        if not has_captions:

            @takes("class_string")
            @provides("caption")
            def caption_pipeline(class_string):
                return make_prompts([class_string], template)[0]

            dataset.add_dynamic_item(caption_pipeline)
    if has_captions or has_labels:
        keys.append("caption")
    dataset.set_output_keys(keys)
    return dataset
