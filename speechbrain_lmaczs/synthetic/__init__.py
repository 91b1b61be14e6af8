"""The synthetic sound-scene benchmark: scenes with exact ground truth, a small CLAP trained on them, and the demo.

No pretrained CLAP can be downloaded in every environment this project runs in, so the localization benchmark is
built on scenes we synthesise ourselves: 1-3 events drawn from :data:`CLASS_LABELS` over a faint pink-noise floor.
Because every event is rendered on its own before mixing, the bins where each event lives in the mixture (its
*support*) can be computed exactly on any spectrogram grid.

This subpackage uses the package (CLAP backends, interpreters, evaluation); the package never imports it (only the
command-line entry point :mod:`speechbrain_lmaczs.demo` forwards to :mod:`.demo`).

Modules
-------
- :mod:`.events`: the event classes, their prompts and synthesisers;
- :mod:`.scenes`: :class:`SceneConfig` and :func:`make_scene` (deterministic in ``(seed, split, index)``);
- :mod:`.supports`: :class:`SpectrogramGrid` and the exact support masks of a scene's events;
- :mod:`.dataset`: :func:`write_synthetic_dataset` (WAVs, supports and a SpeechBrain manifest);
- :mod:`.small_clap`, :mod:`.scene_sets`, :mod:`.small_clap_stages`, :mod:`.small_clap_training`: a small
  MS-CLAP 2022 trained from scratch on the scenes (builder, data, training stages, the trainer);
- :mod:`.localization`: every method's masks scored against the supports;
- :mod:`.demo`: ``make demo``, end to end.

The scene API is importable from here:

>>> from speechbrain_lmaczs.synthetic import CLASS_LABELS, prompt_for
>>> len(CLASS_LABELS), prompt_for("hum")
(10, 'this is the sound of a low hum')
"""

from speechbrain_lmaczs.synthetic.dataset import write_synthetic_dataset
from speechbrain_lmaczs.synthetic.events import (
    CLASS_LABELS,
    EVENT_CLASSES,
    MIN_SAMPLE_RATE,
    EventClass,
    class_index,
    pink_noise,
    prompt_for,
    render_event,
)
from speechbrain_lmaczs.synthetic.scenes import GENERATOR_VERSION, Scene, SceneConfig, SceneEvent, make_scene
from speechbrain_lmaczs.synthetic.supports import SpectrogramGrid, dominant_support, support_masks

__all__ = [
    "CLASS_LABELS",
    "EVENT_CLASSES",
    "GENERATOR_VERSION",
    "MIN_SAMPLE_RATE",
    "EventClass",
    "Scene",
    "SceneConfig",
    "SceneEvent",
    "SpectrogramGrid",
    "class_index",
    "dominant_support",
    "make_scene",
    "pink_noise",
    "prompt_for",
    "render_event",
    "support_masks",
    "write_synthetic_dataset",
]
