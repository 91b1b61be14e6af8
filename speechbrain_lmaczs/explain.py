"""Explain a recording: which part of it made the zero-shot classifier match a prompt.

In the style of SpeechBrain's pretrained interfaces, an :class:`Explainer` loads the frozen CLAP, the trained
LMAC-ZS decoder and its masking domain once, from a ``train.py`` output folder (``from_folder``), a folder written
by ``lmaczs export`` or a hub repository (``from_hparams``), then explains any audio file::

    explainer = Explainer.from_folder("results/ESC50/lmaczs_mel/msclap/1234")
    result = explainer.explain_file("clip.wav", prompts=["dog barking", "rain"])
    for explanation in result.explanations:
        explanation.prompt, explanation.probability, explanation.mask, explanation.waveform

This module is the public face of three: the explaining itself (:mod:`speechbrain_lmaczs.explaining`), reading,
windowing and stitching a recording (:mod:`speechbrain_lmaczs.recording`), and loading
(:mod:`speechbrain_lmaczs.inference`). ``Explainer`` is :class:`~speechbrain_lmaczs.inference.LMACZSExplainer`:
one class, whichever way it is loaded.

>>> Explainer is LMACZSExplainer
True
"""

from speechbrain_lmaczs.explaining import (  # noqa: F401 (this module's interface)
    DB_RANGE,
    EVAL_MANIFESTS,
    LMACZS,
    RUN_KEYS,
    ExplainerCore,
    methods,
    read_run_settings,
    run_labels,
)
from speechbrain_lmaczs.inference import LMACZSExplainer, load_explainer  # noqa: F401
from speechbrain_lmaczs.recording import (  # noqa: F401
    ExplainError,
    Explanation,
    RecordingExplanation,
    read_recording,
    stitch_masks,
    window_starts,
)

#: the project's explainer (see the module docstring)
Explainer = LMACZSExplainer
