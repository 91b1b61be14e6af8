"""The explaining itself: which part of a recording made the zero-shot classifier match a prompt.

:class:`ExplainerCore` holds the model (frozen CLAP, trained LMAC-ZS decoder, masking domain) and explains
waveforms and files; loading it is :mod:`speechbrain_lmaczs.inference`'s job, and users meet both as
:class:`speechbrain_lmaczs.explain.Explainer`.

Any file libsndfile reads (WAV, FLAC, OGG, ...), at any sampling rate (resampled to the encoder's) and with any
number of channels (averaged) is accepted. The model sees fixed windows of ``clap.clip_samples``: a shorter
recording is repeated to fill one window (as the evaluation pipeline does), a longer one is cut into consecutive
windows, the last one aligned with the end of the file. Each window is peak-normalised on its own (as training
clips were) and explained on its own; the window masks are stitched onto the time-frequency grid of the whole
recording, and the listenable explanation is that mask applied to the whole recording's STFT magnitude with its
original phase, resampled back to the file's rate: it has exactly as many samples as the input.

The same pipeline runs the baselines (``method="gradcam"``, ...; see
:data:`speechbrain_lmaczs.interpreters.INTERPRETERS`) on the same classifier and masking domain. Reading the file,
the windows and the stitching live in :mod:`speechbrain_lmaczs.recording`.
"""

import logging
import math
import numbers
import os

import torch
import torchaudio
import yaml
from tqdm import tqdm

from speechbrain_lmaczs.classifier import DEFAULT_TEMPLATE, make_prompts
from speechbrain_lmaczs.data import DATASETS, class_names, datasets_of_kind
from speechbrain_lmaczs.data.pipeline import fix_length, peak_normalize
from speechbrain_lmaczs.interpreters import INTERPRETERS, build_interpreter
from speechbrain_lmaczs.recipe import EVAL_LABELS_MANIFEST
from speechbrain_lmaczs.recording import (
    ExplainError,
    Explanation,
    RecordingExplanation,
    read_recording,
    stitch_masks,
    window_starts,
)

logger = logging.getLogger(__name__)

#: the default method: the trained decoder (loaded with the run); every method is one of
#: :data:`~speechbrain_lmaczs.interpreters.INTERPRETERS`, built on the same classifier
LMACZS = "lmaczs"

#: file name of the evaluation manifest that ``recipe.prepare_eval_manifest`` writes, per ``eval_dataset``
EVAL_MANIFESTS = {
    **{name: DATASETS[name].manifest for name in datasets_of_kind("labels")},
    "labels": EVAL_LABELS_MANIFEST,
}

#: keys of a training run's hyperparams.yaml that loading it needs
RUN_KEYS = ("clap", "domain", "decoder", "use_logit_scale")

#: lowest level shown in dB below a spectrogram's maximum (also the floor of a zero mask in the heard spectrogram)
DB_RANGE = 80.0


def methods():
    """Names accepted as ``method``: those built from the trained model first (LMAC-ZS), then the baselines, each
    group sorted; all of them are :data:`~speechbrain_lmaczs.interpreters.INTERPRETERS`.

    >>> methods()[:2]
    ['lmaczs', 'gradcam']
    """
    return sorted(INTERPRETERS, key=lambda name: (not INTERPRETERS[name].needs_model, name))


class _PlainLoader(yaml.SafeLoader):
    """SafeLoader that reads HyperPyYAML's tags (``!new:``, ``!apply:``, ``!ref`` ...) as None."""


_PlainLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def read_plain_yaml(stream):
    """A HyperPyYAML text (str or open file) as plain data: tags such as ``!new:`` or ``!ref`` read as None.

    >>> read_plain_yaml("lr: 0.1\\nmodel: !new:torch.nn.Linear [2, 2]\\n")
    {'lr': 0.1, 'model': None}
    """
    return yaml.load(stream, Loader=_PlainLoader) or {}  # noqa: S506 (a SafeLoader subclass: no objects)


def read_run_settings(folder):
    """The plain settings of a training run (its ``hyperparams.yaml``), without building any object.

    Tags such as ``!new:`` or ``!apply:`` read as None: only the scalar settings are needed here.

    Parameters
    ----------
    folder : str
        A ``train.py`` output folder.

    Returns
    -------
    dict
    """
    with open(os.path.join(folder, "hyperparams.yaml"), encoding="utf-8") as fin:
        return read_plain_yaml(fin)


def run_labels(folder):
    """Class names of the evaluation set a training run recorded (its ``manifests/<eval set>.json``).

    Parameters
    ----------
    folder : str
        A ``train.py`` output folder.

    Returns
    -------
    list of str

    Raises
    ------
    ExplainError
        When the run recorded no labelled evaluation manifest.
    """
    settings = read_run_settings(folder)
    if settings.get("eval_dataset") == "manifest":
        # The run read a manifest of its own (eval_manifest) instead of preparing one into its manifest folder.
        manifest = settings.get("eval_manifest")
        if isinstance(manifest, str) and os.path.isfile(manifest):
            return class_names(manifest)
        raise ExplainError(
            f"The run in {folder} read its evaluation manifest {manifest!r}, which no longer exists: give labels or "
            "prompts."
        )
    name = EVAL_MANIFESTS.get(settings.get("eval_dataset"))
    if name is None:
        raise ExplainError(f"The run in {folder} names no known eval_dataset ({settings.get('eval_dataset')!r}).")
    # The recorded manifest folder is an absolute path; a moved run folder keeps its manifests next to it.
    places = [os.path.join(folder, "manifests", name)]
    if isinstance(settings.get("manifest_folder"), str):
        places.insert(0, os.path.join(settings["manifest_folder"], name))
    for manifest in places:
        if os.path.isfile(manifest):
            return class_names(manifest)
    raise ExplainError(f"The run in {folder} has no evaluation manifest {name}: give labels or prompts.")


class ExplainerCore:
    """Explains recordings with a trained LMAC-ZS (or a baseline on the same classifier).

    The explaining half of :class:`speechbrain_lmaczs.explain.Explainer` (that is,
    :class:`~speechbrain_lmaczs.inference.LMACZSExplainer`, which adds the loading: SpeechBrain's ``from_hparams``
    and ``from_folder`` for a run folder). Users construct the ``Explainer``; this base keeps the explaining free
    of the loading, so that no two modules import each other.

    Parameters
    ----------
    model : TrainedLMACZS
        CLAP, trained decoder and masking domain (see :func:`speechbrain_lmaczs.lmaczs.pretrained.load_trained`).
    method : str
        ``"lmaczs"`` or a baseline name of :func:`methods`.
    labels : list of str, optional
        Class names whose prompts are scored when ``explain_file`` gets no prompts.
    template : str
        Prompt template for ``labels``.
    device : str
        Where the model runs.
    method_options : dict, optional
        Options of a baseline's constructor (e.g. ``{"n_steps": 16}`` for ``"ig"``).
    """

    def __init__(
        self, model, method=LMACZS, labels=None, template=DEFAULT_TEMPLATE, device="cpu", method_options=None
    ):
        if method not in methods():
            raise ExplainError(f"Unknown method {method!r}: use one of {methods()}.")
        if INTERPRETERS[method].needs_model and method_options:
            raise ExplainError(
                f"{method} is built from the trained model and takes no options, got {sorted(method_options)}."
            )
        self.model = model
        self.method = method
        self.labels = list(labels) if labels is not None else None
        self.template = template
        self.device = device
        self.method_options = dict(method_options or {})
        #: why there is no label set (set by :meth:`from_folder` when the run recorded none)
        self.missing_labels = None

    def with_method(self, method, **method_options):
        """The same loaded model explained by another method (nothing is reloaded)."""
        other = type(self)(self.model, method, self.labels, self.template, self.device, method_options)
        other.missing_labels = self.missing_labels
        return other

    def interpreter(self, classifier):
        """This explainer's interpreter for ``classifier``."""
        return build_interpreter(self.method, classifier, model=self.model, **self.method_options)

    def explain_file(self, path, prompts=None, top_k=3):
        """Explain an audio file.

        Parameters
        ----------
        path : str
            Any file libsndfile reads; any rate, any number of channels, any length.
        prompts : list of str, optional
            What to explain; their probabilities are computed among themselves. None explains the ``top_k``
            most probable prompts of the label set.
        top_k : int
            How many label prompts to explain when ``prompts`` is None.

        Returns
        -------
        RecordingExplanation
        """
        wav, rate = read_recording(path)
        return self.explain_waveform(wav, rate, prompts=prompts, top_k=top_k, path=os.fspath(path))

    def candidate_prompts(self, prompts):
        """Checked prompts to score, and whether they came from the label set."""
        if prompts is None:
            if not self.labels:
                reason = f" ({self.missing_labels})" if self.missing_labels else ""
                raise ExplainError(f"No prompts given and no label set{reason}: give prompts, or labels.")
            return make_prompts(self.labels, self.template), True
        if isinstance(prompts, str):
            prompts = [prompts]
        if len(prompts) == 0:
            raise ExplainError("prompts is empty: give at least one prompt, or None for the top-k labels.")
        for prompt in prompts:
            if not isinstance(prompt, str) or not prompt.strip():
                raise ExplainError(f"Every prompt must be a non-empty text, got {prompt!r}.")
        stripped = [p.strip() for p in prompts]
        repeated = sorted({p for p in stripped if stripped.count(p) > 1})
        if repeated:
            logger.warning("Prompts given more than once are explained once: %s.", ", ".join(map(repr, repeated)))
        return list(dict.fromkeys(stripped)), False

    def explain_waveform(self, wav, sample_rate, prompts=None, top_k=3, path=None):
        """Explain a (samples,) or (channels, samples) waveform at ``sample_rate``; see :meth:`explain_file`."""
        wav = self._check_waveform(wav, sample_rate)
        if int(top_k) < 1:
            raise ExplainError(f"top_k must be at least 1, got {top_k}.")
        candidates, from_labels = self.candidate_prompts(prompts)
        clap, domain = self.model.clap, self.model.domain
        window = clap.clip_samples
        enc = wav
        if sample_rate != clap.sample_rate:
            enc = torchaudio.functional.resample(wav, sample_rate, clap.sample_rate)
        starts = window_starts(enc.shape[-1], window)
        frame_seconds, frequencies, scale = domain.frame_seconds, domain.frequencies(), domain.frequency_scale
        # A recording shorter than a window is zero-padded to one window for its own spectrogram and STFT (the
        # STFT needs some length); every grid is cropped back to the recording at the end.
        grid_wav = torch.nn.functional.pad(enc, (0, max(0, window - enc.shape[-1]))).to(self.device)
        with torch.no_grad():
            spectrogram = domain.to_db(domain.representation(peak_normalize(grid_wav)[None]))[0].cpu()
        n_frames = 1 + int(math.floor(enc.shape[-1] / clap.sample_rate / frame_seconds + 1e-9))

        classifier = self.model.classifier(candidates).to(self.device)
        windows = [self._window(enc, start, window) for start in starts]
        probabilities = self._probabilities(classifier, windows)
        if from_labels:
            if int(top_k) > len(candidates):
                logger.warning(
                    "top_k is %d but the label set has %d classes: explaining all %d.",
                    int(top_k),
                    len(candidates),
                    len(candidates),
                )
            order = torch.argsort(probabilities, descending=True)[: min(int(top_k), len(candidates))].tolist()
        else:
            order = list(range(len(candidates)))
        masks = stitch_masks(
            self._window_masks(self.interpreter(classifier), windows, order),
            [start / clap.sample_rate for start in starts],
            window / clap.sample_rate,
            frame_seconds,
            spectrogram.shape[0],
        )
        result = RecordingExplanation(
            path=path,
            sample_rate=int(sample_rate),
            waveform=wav,
            spectrogram=spectrogram[:n_frames],
            frame_seconds=frame_seconds,
            frequencies=frequencies,
            frequency_scale=scale,
            method=self.method,
            candidates=candidates,
            probabilities=probabilities,
            n_windows=len(starts),
        )
        for row, index in enumerate(order):
            result.explanations.append(
                Explanation(
                    prompt=candidates[index],
                    probability=float(probabilities[index]),
                    method=self.method,
                    mask=masks[row, :n_frames],
                    waveform=self._listen(grid_wav, masks[row], wav.shape[-1], sample_rate),
                )
            )
        logger.info("Explained %s (%d windows) for %d prompts with %s", path, len(starts), len(order), self.method)
        return result

    @staticmethod
    def _check_waveform(wav, sample_rate):
        """A finite, non-empty mono (samples,) float32 CPU waveform (channels averaged)."""
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral) or sample_rate <= 0:
            raise ExplainError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}.")
        wav = torch.as_tensor(wav, dtype=torch.float32).detach().cpu()
        if wav.dim() == 2:
            wav = wav.mean(dim=0)
        if wav.dim() != 1 or wav.numel() == 0:
            shape = tuple(wav.shape)
            raise ExplainError(f"Expected a non-empty (samples,) or (channels, samples) waveform, got {shape}.")
        if not torch.isfinite(wav).all():
            raise ExplainError("The waveform has NaN or infinite samples.")
        return wav

    def _window(self, enc, start, window):
        """The representation of one model window, peak-normalised like a training clip."""
        chunk = peak_normalize(fix_length(enc[start : start + window], window))
        with torch.no_grad():
            return self.model.domain.representation(chunk[None].to(self.device))

    def _window_masks(self, interpreter, windows, order):
        """(n_windows, len(order), time, freq) masks of each window for the candidates ``order``."""
        target = torch.tensor(order, device=self.device)
        masks = []
        for x in tqdm(windows, desc=f"explaining ({self.method})", unit="window", disable=len(windows) == 1):
            # One row per prompt: every interpreter explains a batch of clips, each for its own target.
            masks.append(interpreter.explain(x.repeat(len(order), 1, 1), target).cpu())
        return torch.stack(masks)

    @torch.no_grad()
    def _probabilities(self, classifier, windows):
        """Zero-shot probabilities over the candidates, averaged over windows."""
        total = 0
        for x in tqdm(windows, desc="classifying", unit="window", disable=len(windows) == 1):
            total = total + classifier(x).softmax(dim=-1)[0].cpu()
        return total / len(windows)

    @torch.no_grad()
    def _listen(self, grid_wav, mask, n_samples, sample_rate):
        """The mask applied to the recording's STFT (original phase), back at the file's rate and length."""
        domain = self.model.domain
        out = domain.listen(grid_wav[None], mask[None].to(self.device))[0].cpu()
        if domain.output_sample_rate != sample_rate:
            out = torchaudio.functional.resample(out, domain.output_sample_rate, sample_rate)
        # Resampling rounds lengths up and short inputs were padded: crop (or pad the last rounding sample).
        return torch.nn.functional.pad(out[:n_samples], (0, max(0, n_samples - out.shape[-1])))
