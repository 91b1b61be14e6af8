"""What every (method, condition) pair shares: the evaluation data, the classifier, its prompts and the target."""

import hashlib
import json

import torch

from speechbrain_lmaczs.classifier import make_prompts
from speechbrain_lmaczs.data import (
    Contaminator,
    class_names,
    make_dataset,
    prepare_ljspeech,
    prepare_speech,
    read_manifest,
    subset,
)
from speechbrain_lmaczs.distributed import shard_indices
from speechbrain_lmaczs.interpreters import build_interpreter
from speechbrain_lmaczs.recipe import prepare_eval_manifest


def prepare_evaluation_data(hparams):
    """Manifests of the evaluation set and, when the ``speech`` condition is asked for, of the speech pool.

    The speech pool is every WAV/FLAC/OGG under ``speech_folder`` (searched recursively) or, when that is null,
    LJSpeech in ``ljspeech_folder`` (downloaded there when the folder is empty). Idempotent: call it through
    ``run_on_main`` and again on every process to get the paths.

    Returns
    -------
    dict
        ``{"eval": path, "speech": path or None}``.
    """
    manifests = {"eval": prepare_eval_manifest(hparams), "speech": None}
    if "speech" in hparams["conditions"]:
        save = hparams["manifest_folder"]
        if hparams["speech_folder"] not in (None, ""):
            manifests["speech"] = prepare_speech(hparams["speech_folder"], save)
        else:
            manifests["speech"] = prepare_ljspeech(hparams["ljspeech_folder"], save)
    return manifests


def make_interpreter(method, classifier, model, options=None):
    """The interpreter ``method`` of ``classifier``; a method that needs a trained model takes it from ``model``."""
    return build_interpreter(method, classifier, model=model, **(options or {}))


class Setup:
    """What every (method, condition) pair shares: the classifier, its prompts and the explained target."""

    def __init__(self, model, manifest, settings, template, device):
        self.model = model
        self.domain = model.domain
        self.labels = class_names(manifest)
        self.n_classes = len(self.labels)
        prompts = make_prompts(self.labels, template)
        self.target_index = None
        self.target_name = None
        if settings.target_prompt is not None:
            if settings.target_prompt not in prompts:
                prompts = prompts + [settings.target_prompt]
            self.target_index = prompts.index(settings.target_prompt)
            self.target_name = settings.target_prompt
        self.classifier = model.classifier(prompts).to(device)
        self.prompts = prompts

    def interpreter(self, method, settings, classifier=None):
        """The interpreter ``method`` (with its options in ``settings``) of the shared classifier, or of
        ``classifier`` (a randomized copy)."""
        classifier = self.classifier if classifier is None else classifier
        return make_interpreter(method, classifier, self.model, settings.options(method))

    def targets(self, logits):
        """(batch,) explained class: the decision over the class prompts, or the fixed prompt's index."""
        if self.target_index is None:
            return logits[:, : self.n_classes].argmax(dim=-1)
        return torch.full((logits.shape[0],), self.target_index, dtype=torch.long, device=logits.device)

    def target_names(self, targets):
        return [self.labels[i] if i < self.n_classes else self.target_name for i in targets.tolist()]

    def describe(self, settings, device):
        """Facts results.md states about the classifier and protocol."""
        scale = float(self.classifier.scale)
        return {
            "backend": self.model.clap.name,
            "domain": self.domain.describe(),
            "n_classes": self.n_classes,
            "template_example": self.prompts[0],
            "temperature": scale,
            "use_logit_scale": bool(self.classifier.use_logit_scale),
            "target": "the zero-shot decision c^ (argmax p)"
            if settings.target_prompt is None
            else f"the fixed prompt {settings.target_prompt!r}",
            "device": str(device),
        }


def condition_contaminator(setup, settings, manifest, condition, speech_manifest=None):
    """The :class:`~speechbrain_lmaczs.data.Contaminator` of ``condition`` (None for ``"clean"``)."""
    if condition == "clean":
        return None
    clap = setup.model.clap
    pool = {"mixture": manifest, "speech": speech_manifest}.get(condition)
    return Contaminator(condition, settings.snr_db, clap.sample_rate, clap.clip_samples, pool=pool, seed=settings.seed)


def condition_dataset(setup, settings, manifest, condition, speech_manifest):
    """The evaluated clips (a seeded subset of ``manifest``) under ``condition``'s contamination."""
    clap = setup.model.clap
    return make_dataset(
        subset(manifest, settings.max_clips, settings.seed),
        clap.sample_rate,
        clap.clip_samples,
        labels=setup.labels,
        contaminator=condition_contaminator(setup, settings, manifest, condition, speech_manifest),
    )


def mixture_partners(setup, settings, manifest):
    """Clip id -> class index (in ``setup.labels``) of the clip the ``mixture`` condition mixes into it.

    The contaminant is the one :class:`~speechbrain_lmaczs.data.Contaminator` draws for the clip (its
    ``contaminant_id``, a key of ``manifest``); its label is that manifest entry's ``class_string``.
    """
    contaminator = condition_contaminator(setup, settings, manifest, "mixture")
    entries = read_manifest(manifest)
    return {
        clip_id: setup.labels.index(entries[contaminator.contaminant_id(clip_id)]["class_string"])
        for clip_id in subset(manifest, settings.max_clips, settings.seed)
    }


def batch_loader(dataset, settings, shard=None):
    """(batches, how many): the dataset's batches, at most ``settings.max_batches`` of them.

    With ``shard = (i, n)`` (1-based), only every ``n``-th of those batches from the ``i``-th
    (:func:`~speechbrain_lmaczs.distributed.shard_indices`): each batch holds the same clips as in a one-process
    run, so every method (SmoothGrad's seeded noise included) gives each clip the same numbers.
    """
    from speechbrain.dataio.dataloader import make_dataloader

    size = settings.batch_size
    batches = [list(range(start, min(start + size, len(dataset)))) for start in range(0, len(dataset), size)]
    batches = batches[: settings.max_batches]
    if shard is not None:
        batches = [batches[k] for k in shard_indices(len(batches), *shard)]
    loader = make_dataloader(dataset, batch_sampler=batches, num_workers=settings.num_workers)
    return iter(loader), len(batches)


def data_digest(setup, manifest, settings):
    """Digest of the evaluated clips, their labels and the prompts: another dataset never mixes into old results."""
    clips = subset(manifest, settings.max_clips, settings.seed)
    content = json.dumps(
        {"clips": sorted((key, entry.get("class_string")) for key, entry in clips.items()), "prompts": setup.prompts}
    )
    return hashlib.sha256(content.encode("utf-8")).hexdigest()

