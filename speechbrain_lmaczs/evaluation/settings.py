"""What an evaluation runs and how: :class:`EvalSettings`, read from the keys of ``eval.yaml``.

Each setting lives in one place, a field of :class:`EvalSettings`: its name is the yaml key, its default the
default, and :meth:`EvalSettings.from_hparams` reads every field from the key of the same name.
"""

import dataclasses
import math

from speechbrain_lmaczs.data.contamination import CONDITIONS
from speechbrain_lmaczs.errors import ConfigError
from speechbrain_lmaczs.interpreters import INTERPRETERS

#: every method the evaluation knows, in table order: the registry's (the paper's, the appendix CAMs before LMAC-ZS)
METHODS = tuple(INTERPRETERS)
#: settings given on the command line, not in the yaml
COMMAND_LINE_SETTINGS = ("max_batches",)


@dataclasses.dataclass
class EvalSettings:
    """What an evaluation runs and how.

    Parameters
    ----------
    methods : sequence of str
        Interpreters to compare (:data:`METHODS`: the keys of
        :data:`~speechbrain_lmaczs.interpreters.INTERPRETERS`).
    conditions : sequence of str
        Contamination conditions (``"clean"``, ``"mixture"``, ``"white_noise"``, ``"speech"``).
    snr_db : float
        Signal-to-contaminant ratio of the contaminated conditions (paper: 3 dB).
    seed : int
        Seeds the contamination of each clip, the choice of clips (``max_clips``) and of the sanity prompts.
    batch_size : int
        Clips per batch.
    max_clips : int, optional
        Evaluate a seeded subset of this many clips (None: all).
    max_batches : int, optional
        Stop each (method, condition) after this many batches (SpeechBrain's ``--debug``); None: no limit.
    num_workers : int
        Data loading workers.
    target_prompt : str, optional
        None explains each clip's zero-shot decision ``c^``. A prompt explains that prompt for every clip; if it
        is not one of the class prompts it is added to them as one more class, so ``p``, ``o`` and ``q`` (and the
        metrics) are over the class prompts plus this prompt, while the accuracy stays over the class prompts.
    interpreter_options : dict
        Method name -> keyword arguments of its constructor (e.g. ``{"ig": {"n_steps": 50}}``).
    legacy_double_softmax : bool
        AD variant (see :func:`~speechbrain_lmaczs.metrics.average_drop`); False is the paper's formula.
    sanity_similarity, sanity_randomisation : bool
        Run the mask-mean-vs-similarity check / the cascading randomization check after the main table (the
        field keeps the yaml key's spelling).
    sanity_methods : sequence of str
        Methods the sanity checks explain (the paper shows GradCAM++ and LMAC-ZS).
    sanity_clips : int
        Clean clips the sanity checks use (the first ones of the evaluated set).
    sanity_prompts : int
        Prompts per clip in the similarity check: the predicted class and seeded random others.
    """

    methods: tuple = METHODS
    conditions: tuple = CONDITIONS
    snr_db: float = 3.0
    seed: int = 0
    batch_size: int = 8
    max_clips: int = None
    max_batches: int = None
    num_workers: int = 0
    target_prompt: str = None
    interpreter_options: dict = dataclasses.field(default_factory=dict)
    legacy_double_softmax: bool = False
    sanity_similarity: bool = False
    sanity_randomisation: bool = False
    sanity_methods: tuple = ("gradcam++", "lmaczs")
    sanity_clips: int = 8
    sanity_prompts: int = 5

    def __post_init__(self):
        self.methods = _names(self.methods, METHODS, "methods")
        self.conditions = _names(self.conditions, CONDITIONS, "conditions")
        self.sanity_methods = _names(self.sanity_methods, METHODS, "sanity_methods")
        for name in ("batch_size", "sanity_clips", "sanity_prompts"):
            setattr(self, name, _positive_int(getattr(self, name), name))
        for name in ("max_clips", "max_batches"):
            if getattr(self, name) is not None:
                setattr(self, name, _positive_int(getattr(self, name), name))
        if isinstance(self.num_workers, bool) or int(self.num_workers) != self.num_workers or self.num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {self.num_workers!r}.")
        _check_snr(self.snr_db)
        prompt = self.target_prompt
        if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
            raise ValueError(f"target_prompt must be null or a non-empty prompt, got {self.target_prompt!r}.")
        options = dict(self.interpreter_options or {})
        unknown = sorted(set(options) - set(METHODS))
        if unknown:
            raise ValueError(f"interpreter_options has entries for unknown methods {unknown}: use {list(METHODS)}.")
        for name, value in options.items():
            if value is not None and not isinstance(value, dict):
                raise TypeError(f"interpreter_options[{name!r}] must be a mapping of options, got {value!r}.")
        for name, value in options.items():
            if value and INTERPRETERS[name].needs_model:
                raise ValueError(f"{name} takes no interpreter options (it is built from the trained checkpoint).")
        self.interpreter_options = {name: dict(value or {}) for name, value in options.items()}

    def options(self, method):
        """Constructor options of ``method``."""
        return dict(self.interpreter_options.get(method, {}))

    def fingerprint(self):
        """The settings that change the numbers of a finished (method, condition) pair.

        The lists of methods and conditions, the batch size, the workers and the sanity checks are left out: a
        restart may add pairs or checks to an output folder, but never mix numbers computed differently.
        """
        return {
            "snr_db": float(self.snr_db),
            "seed": int(self.seed),
            "max_clips": self.max_clips,
            "max_batches": self.max_batches,
            "target_prompt": self.target_prompt,
            "interpreter_options": {name: self.options(name) for name in sorted(self.interpreter_options)},
            "legacy_double_softmax": bool(self.legacy_double_softmax),
        }

    @classmethod
    def from_hparams(cls, hparams, max_batches=None):
        """Settings from an ``eval.yaml`` (see recipes/ESC50/interpret/hparams/eval.yaml).

        Every field is read from the yaml key of the same name, except :data:`COMMAND_LINE_SETTINGS`
        (``max_batches``: the ``--debug`` limit of the command line).
        """
        values = {field.name: hparams[field.name] for field in yaml_fields()}
        return cls(**values, max_batches=max_batches)


#: SNRs (dB) of the contaminated conditions that still mean something: below -40 dB the clip is 10,000 times weaker
#: than what is mixed in (nothing of it is left to classify or explain); above 96 dB (the range of 16-bit audio, the
#: datasets' format) the mixture is the clean clip once stored
SNR_RANGE_DB = (-40.0, 96.0)


def _check_snr(snr_db):
    """Refuse an SNR that is not a number of dB within :data:`SNR_RANGE_DB`.

    >>> _check_snr(3.0)
    >>> _check_snr(-100)
    Traceback (most recent call last):
    ...
    speechbrain_lmaczs.errors.ConfigError: snr_db must be between -40 and 96 dB, got -100: ...
    """
    try:
        value = float(snr_db)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(snr_db, bool) or not math.isfinite(value):
        raise ConfigError(f"snr_db must be a finite number of dB, got {snr_db!r}: e.g. --snr_db=3.")
    low, high = SNR_RANGE_DB
    if not low <= value <= high:
        raise ConfigError(
            f"snr_db must be between {low:g} and {high:g} dB, got {snr_db!r}: below, the clip is lost under what is "
            "mixed in; above, the mixture is the clean clip."
        )


def yaml_fields():
    """The :class:`EvalSettings` fields an ``eval.yaml`` sets (its keys have the fields' names).

    >>> [field.name for field in yaml_fields()][:3]
    ['methods', 'conditions', 'snr_db']
    >>> "max_batches" in [field.name for field in yaml_fields()]
    False
    """
    return [field for field in dataclasses.fields(EvalSettings) if field.name not in COMMAND_LINE_SETTINGS]

def _names(values, known, what):
    if isinstance(values, str):
        raise TypeError(f"{what} must be a list of names, not one string: use [{values}].")
    values = tuple(values)
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ValueError(f"Unknown {what} {unknown}: use some of {list(known)}.")
    if len(set(values)) != len(values):
        raise ValueError(f"{what} lists a name twice: {list(values)}.")
    return values


def _positive_int(value, name):
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return int(value)

