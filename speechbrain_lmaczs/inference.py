"""A trained LMAC-ZS as a SpeechBrain pretrained interface: ``from_hparams`` on a local folder or a hub id.

:class:`LMACZSExplainer` is the project's one explainer (``speechbrain_lmaczs.explain.Explainer`` is this
class): it has every explaining method of :class:`~speechbrain_lmaczs.explaining.ExplainerCore` (``explain_file``
included) and follows SpeechBrain's :class:`~speechbrain.inference.interfaces.Pretrained` contract, so a folder
written by ``lmaczs export`` (see :mod:`speechbrain_lmaczs.export`) loads like any SpeechBrain model::

    explainer = LMACZSExplainer.from_hparams(source="owner/lmaczs-esc50", savedir="pretrained/lmaczs")
    result = explainer.explain_file("clip.wav", prompts=["dog barking", "rain"])

``source`` is a local folder or a Hugging Face hub id. Every file is fetched with SpeechBrain's own
:func:`speechbrain.utils.fetching.fetch` (the inference ``hyperparams.yaml``, the decoder checkpoint through its
``Pretrainer`` and, when the export bundles it, the CLAP's files), so the hub cache (``HF_HOME``,
``HF_HUB_CACHE``) and offline mode (``HF_HUB_OFFLINE=1``) behave as for any SpeechBrain model. A ``train.py``
output folder loads into the same class with :meth:`LMACZSExplainer.from_run` (what
``Explainer.from_folder`` routes to), and :func:`load_explainer` picks the right loader for a path or hub id.
"""

import logging
import os
import re

import torch
import yaml
from speechbrain.inference.interfaces import Pretrained
from speechbrain.utils.fetching import fetch

from speechbrain_lmaczs.classifier import DEFAULT_TEMPLATE
from speechbrain_lmaczs.clap import CLAPLoadError, load_clap
from speechbrain_lmaczs.data import DataPrepError
from speechbrain_lmaczs.explaining import (
    LMACZS,
    RUN_KEYS,
    ExplainError,
    ExplainerCore,
    methods,
    read_run_settings,
    run_labels,
)
from speechbrain_lmaczs.lmaczs import run_folder
from speechbrain_lmaczs.lmaczs.pretrained import TrainedLMACZS

logger = logging.getLogger(__name__)

#: the file of an exported folder that names its interface (as on SpeechBrain's hub repositories)
CONFIG_FILE = "config.json"
#: the decoder checkpoint of an exported folder (the ``Pretrainer``'s default name for the loadable "decoder")
DECODER_FILE = "decoder.ckpt"
#: sub-folder of an exported folder holding the CLAP when it is bundled
CLAP_FOLDER = "clap"


def load_state_dict_strict(module, path):
    """Pretrainer hook: load a ``torch.save``-d state dict into ``module``, every key matching.

    SpeechBrain's default transfer hook loads non-strictly (a mismatch is only logged); a decoder exported for
    another architecture must fail loudly instead.

    Example
    -------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     torch.save(torch.nn.Linear(2, 3).state_dict(), os.path.join(d, "p.ckpt"))
    ...     load_state_dict_strict(torch.nn.Linear(2, 2), os.path.join(d, "p.ckpt"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    speechbrain_lmaczs.recording.ExplainError: ...p.ckpt does not fit this decoder: ...size mismatch...
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ExplainError(f"{path} does not fit this decoder: {err}") from err


def fetch_clap(backend, files, source, savedir=None):
    """Fetch the files of a CLAP bundled in an exported folder (``clap/...``) and load it.

    Parameters
    ----------
    backend : str
        CLAP backend (see :func:`speechbrain_lmaczs.clap.load_clap`).
    files : list of str
        Names of the CLAP's files, relative to the export's ``clap/`` folder.
    source : str
        The exported folder or hub id (what ``from_hparams`` got).
    savedir : str, optional
        Where ``from_hparams`` collects files (links under ``savedir/clap``); None reads them where they are (the
        folder itself, or the hub cache).

    Returns
    -------
    CLAPBackend
    """
    folders = set()
    for name in files:
        path = fetch(
            filename=f"{CLAP_FOLDER}/{name}",
            source=source,
            savedir=None if savedir is None else os.path.join(savedir, CLAP_FOLDER, os.path.dirname(name)),
            save_filename=os.path.basename(name),
        )
        # ``path`` ends with ``name`` (in the export folder, the hub cache or savedir): the rest is the CLAP folder.
        folders.add(os.fspath(path)[: -len(name) - 1])
    if len(folders) != 1:
        raise ExplainError(f"The bundled CLAP files of {source} were fetched into several folders {sorted(folders)}.")
    return load_clap(backend, folders.pop())


class LMACZSExplainer(ExplainerCore, Pretrained):
    """The explainer of a trained LMAC-ZS, as a SpeechBrain interface (``speechbrain_lmaczs.explain.Explainer``).

    Built by :meth:`from_hparams` (an exported folder or hub repository) or :meth:`from_run` (a ``train.py``
    output folder); all explaining (``explain_file``, ``explain_waveform``, ``with_method``) is the
    :class:`~speechbrain_lmaczs.explaining.ExplainerCore`'s.

    Parameters
    ----------
    modules : dict
        ``clap`` (the frozen CLAP backend) and ``decoder`` (the trained
        :class:`~speechbrain_lmaczs.lmaczs.decoder.MaskDecoder`).
    hparams : dict
        ``domain`` (masking domain), ``use_logit_scale``, ``prompt_template`` and ``labels`` (class names scored
        when no prompts are given; may be None).
    run_opts : dict, optional
        SpeechBrain run options; ``{"device": "cuda"}`` selects where the model runs.
    freeze_params : bool
        As in :class:`~speechbrain.inference.interfaces.Pretrained` (True: eval mode, no parameter gradients).
    method : str
        ``"lmaczs"`` (the trained decoder) or a baseline on the same classifier.
    labels : list of str, optional
        Overrides ``hparams["labels"]``.
    method_options : dict, optional
        Options of a baseline's constructor.
    """

    HPARAMS_NEEDED = ["domain", "use_logit_scale", "prompt_template", "labels"]
    MODULES_NEEDED = ["clap", "decoder"]

    def __init__(
        self,
        modules=None,
        hparams=None,
        run_opts=None,
        freeze_params=True,
        method=LMACZS,
        labels=None,
        method_options=None,
    ):
        Pretrained.__init__(self, modules, hparams, run_opts, freeze_params)
        missing = [name for name in self.MODULES_NEEDED if name not in self.mods]
        if missing:
            raise ExplainError(f"The interface needs the modules {missing} (hyperparams.yaml 'modules').")
        model = TrainedLMACZS(self.mods.clap, self.mods.decoder, self.hparams.domain, self.hparams.use_logit_scale)
        ExplainerCore.__init__(
            self,
            model.to(self.device).eval(),
            method=method,
            labels=self.hparams.labels if labels is None else labels,
            template=self.hparams.prompt_template or DEFAULT_TEMPLATE,
            device=self.device,
            method_options=method_options,
        )

    @classmethod
    def from_hparams(cls, source, hparams_file="hyperparams.yaml", savedir=None, overrides=None, **kwargs):
        """Fetch and load an exported explainer (a local folder or a hub id), as SpeechBrain's interfaces do.

        Parameters
        ----------
        source : str or path
            A folder written by ``lmaczs export``, or the hub id of a repository holding one.
        hparams_file : str
            The inference hyperparameters in ``source``.
        savedir : str or path, optional
            Where the fetched files are collected (links by default); None reads them in place / from the cache.
        overrides : dict, optional
            Hyperparameter overrides.
        **kwargs
            Passed on as in :meth:`speechbrain.inference.interfaces.Pretrained.from_hparams`: ``run_opts``,
            ``local_strategy``, ``fetch_config``, and this class's ``method``, ``labels``, ``method_options``.

        Returns
        -------
        LMACZSExplainer

        Raises
        ------
        ExplainError
            When ``source`` holds no exported explainer or a file cannot be fetched; the message says which.
        """
        # The bundled CLAP is fetched while the yaml is read (the decoder's shape depends on it), so the yaml needs
        # to know where from.
        all_overrides = {"source": os.fspath(source), "savedir": None if savedir is None else os.fspath(savedir)}
        all_overrides.update(overrides or {})
        try:
            return super().from_hparams(source, hparams_file, savedir=savedir, overrides=all_overrides, **kwargs)
        except ExplainError:
            raise
        except (OSError, ValueError, CLAPLoadError) as err:
            # fetch raises ValueError/OSError subclasses (hub errors included) for a missing file or repository.
            raise ExplainError(
                f"Cannot load an exported LMAC-ZS explainer from {source} ({type(err).__name__}: {err}). Give a folder "
                "written by `lmaczs export` or the hub id of one (offline: it must be in the hub cache)."
            ) from err

    @classmethod
    def from_run(cls, folder, device="cpu", method=LMACZS, labels=None, clap_source=None, **method_options):
        """Load the best checkpoint of a ``train.py`` output folder.

        Parameters
        ----------
        folder : str
            The run's ``output_folder`` (``hyperparams.yaml``, ``save/``, ``clap/``, ``manifests/``).
        device : str
            Where the model runs.
        method : str
            ``"lmaczs"`` (the trained decoder) or a baseline.
        labels : list of str, optional
            Class names for top-k explanations; by default the run's evaluation labels (when it recorded them).
        clap_source : str, optional
            CLAP to load instead of the one the run recorded (hub id or local checkpoint of the same backend).
        **method_options
            Options of a baseline's constructor.

        Returns
        -------
        LMACZSExplainer
        """
        from speechbrain_lmaczs.lmaczs.pretrained import load_trained

        folder = os.fspath(folder)
        settings = check_run_folder(folder)
        if method not in methods():  # before the (slow) load
            raise ExplainError(f"Unknown method {method!r}: use one of {methods()}.")
        try:
            overrides = {"clap_source": clap_source} if clap_source else None
            model = load_trained(folder, device=device, overrides=overrides)
        except (FileNotFoundError, CLAPLoadError) as err:
            raise ExplainError(str(err)) from err
        missing_labels = None
        if labels is None:
            try:
                labels = run_labels(folder)
            except (ExplainError, DataPrepError) as err:
                # Prompts still work; only top-k over labels needs them, and that error repeats this reason.
                missing_labels = str(err)
                logger.info("No label set from %s: %s", folder, err)
        template = settings.get("prompt_template") or DEFAULT_TEMPLATE
        explainer = cls.from_model(model, method, labels, template, device, method_options)
        explainer.missing_labels = missing_labels
        explainer.model.checkpoint = model.checkpoint
        return explainer

    @classmethod
    def from_folder(cls, folder, device="cpu", method=LMACZS, labels=None, clap_source=None, **method_options):
        """Load the best checkpoint of a ``train.py`` output folder: the same as :meth:`from_run`."""
        return cls.from_run(
            folder, device=device, method=method, labels=labels, clap_source=clap_source, **method_options
        )

    @classmethod
    def from_model(
        cls, model, method=LMACZS, labels=None, template=DEFAULT_TEMPLATE, device="cpu", method_options=None
    ):
        """Wrap an already loaded :class:`~speechbrain_lmaczs.lmaczs.pretrained.TrainedLMACZS`.

        Parameters
        ----------
        model : TrainedLMACZS
            CLAP, trained decoder and masking domain.
        method, labels, method_options
            As in the class.
        template : str
            Prompt template for ``labels``.
        device : str
            Where the model runs.

        Returns
        -------
        LMACZSExplainer
        """
        hparams = {
            "domain": model.domain,
            "use_logit_scale": model.use_logit_scale,
            "prompt_template": template,
            "labels": labels,
        }
        modules = {"clap": model.clap, "decoder": model.decoder}
        return cls(modules, hparams, {"device": device}, method=method, method_options=method_options)

    def with_method(self, method, **method_options):
        """The same loaded model explained by another method (nothing is reloaded)."""
        hparams = dict(vars(self.hparams), labels=self.labels)
        run_opts = {"device": self.device}
        other = type(self)(dict(self.mods), hparams, run_opts, method=method, method_options=method_options)
        other.missing_labels = self.missing_labels
        return other


def check_run_folder(folder):
    """The settings of a ``train.py`` output folder, after checking it is one.

    Parameters
    ----------
    folder : str

    Returns
    -------
    dict
        Its ``hyperparams.yaml`` read without building objects.

    Raises
    ------
    ExplainError
        Missing folder, no or invalid ``hyperparams.yaml``, or not an LMAC-ZS run.
    """
    try:
        run_folder.check_run_folder(folder, "Checkpoint folder")
    except run_folder.NotARunError as err:
        raise ExplainError(str(err)) from err
    settings_file = os.path.join(folder, "hyperparams.yaml")
    try:
        settings = read_run_settings(folder)
    except yaml.YAMLError as err:
        raise ExplainError(f"{settings_file} is not valid YAML ({err}).") from err
    missing = [key for key in RUN_KEYS if key not in settings]
    if missing:
        raise ExplainError(f"{folder} is not an LMAC-ZS training output: its hyperparams.yaml lacks {missing}.")
    return settings


def is_exported(folder):
    """Whether ``folder`` holds an explainer written by ``lmaczs export`` (its ``config.json`` names the interface)."""
    return os.path.isfile(os.path.join(folder, CONFIG_FILE)) and os.path.isfile(
        os.path.join(folder, "hyperparams.yaml")
    ) and not os.path.isdir(os.path.join(folder, "save"))


#: a Hugging Face hub repository id (``owner/name``)
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def load_explainer(checkpoint, device="cpu", labels=None, savedir=None, clap_source=None):
    """Load an explainer from a ``train.py`` output folder, an exported folder, or a hub id.

    Parameters
    ----------
    checkpoint : str
        The run folder, the folder ``lmaczs export`` wrote, or ``owner/name`` on the Hugging Face hub.
    device : str
        Where the model runs.
    labels : list of str, optional
        Class names for top-k explanations (default: the run's or the export's).
    savedir : str, optional
        For an exported folder or hub id: where fetched files are collected (default: read in place / cache).
    clap_source : str, optional
        For a run folder: CLAP to load instead of the one the run recorded.

    Returns
    -------
    LMACZSExplainer

    Example
    -------
    >>> load_explainer("no/such/folder/")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    speechbrain_lmaczs.recording.ExplainError: Checkpoint no/such/folder/ is neither a folder nor a hub id...
    """
    checkpoint = os.fspath(checkpoint)
    if os.path.isdir(checkpoint):
        if is_exported(checkpoint):
            return LMACZSExplainer.from_hparams(checkpoint, savedir=savedir, run_opts={"device": device}, labels=labels)
        return LMACZSExplainer.from_run(checkpoint, device=device, labels=labels, clap_source=clap_source)
    if HUB_ID.fullmatch(checkpoint):
        return LMACZSExplainer.from_hparams(checkpoint, savedir=savedir, run_opts={"device": device}, labels=labels)
    raise ExplainError(
        f"Checkpoint {checkpoint} is neither a folder nor a hub id: give the --output_folder of train.py, a folder "
        "written by `lmaczs export`, or a hub id such as owner/name."
    )
