"""Data: dataset preparation (manifests), the audio pipeline, and out-of-domain contamination.

Preparations write a JSON manifest and return its path; recipes call them through SpeechBrain's
``run_on_main``:

- :func:`prepare_esc50`, :func:`prepare_urbansound8k`: labelled evaluation sets;
- :func:`prepare_clotho`, :func:`prepare_captions`: caption data for training;
- :func:`prepare_labels`: any folder of audio + CSV of labels (evaluation, or training on label captions);
- :func:`prepare_speech`, :func:`prepare_ljspeech`: speech pools for the "speech" contamination.

:func:`make_dataset` turns a manifest into a ``DynamicItemDataset``; :class:`Contaminator` adds mixtures, white
noise or speech at a given SNR.
"""

from speechbrain_lmaczs.data.captions import label_caption, prepare_captions, prepare_clotho, prepare_labels
from speechbrain_lmaczs.data.contamination import CONDITIONS, Contaminator
from speechbrain_lmaczs.data.esc50 import prepare_esc50
from speechbrain_lmaczs.data.manifest import DataPrepError, MissingDataError
from speechbrain_lmaczs.data.pipeline import class_names, load_audio, load_clip, make_dataset, read_manifest
from speechbrain_lmaczs.data.speech import prepare_ljspeech, prepare_speech
from speechbrain_lmaczs.data.urbansound8k import prepare_urbansound8k

__all__ = [
    "CONDITIONS",
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
]
