"""The evaluation loop: every (method, condition) pair of the settings, streamed, timed and resumable."""

import csv
import logging
import os
import time

import torch
from tqdm import tqdm

from speechbrain_lmaczs.classifier import DEFAULT_TEMPLATE
from speechbrain_lmaczs.evaluation.sanity_checks import randomization_check, similarity_check
from speechbrain_lmaczs.evaluation.settings import EvalSettings
from speechbrain_lmaczs.distributed import parse_shard, world
from speechbrain_lmaczs.evaluation.scoring import explain_sources, mixture_selectivity, reference_metrics
from speechbrain_lmaczs.evaluation.setup import Setup, batch_loader, condition_dataset, data_digest, mixture_partners
from speechbrain_lmaczs.evaluation.shards import (
    SHARDS_FOLDER,
    merge_shards,
    shard_counts,
    shard_folder,
    shard_state,
    wait_for_shards,
)
from speechbrain_lmaczs.evaluation.store import (
    MASK_KINDS,
    PER_CLIP_COLUMNS,
    PER_CLIP_CSV,
    RESULTS_CSV,
    RESULTS_MD,
    SELECTIVITY,
    VALUE_NAMES,
    keep_finished_rows,
    load_state,
    read_results,
    sort_key,
    write_results,
    write_state,
)
from speechbrain_lmaczs.evaluation.tables import write_markdown
from speechbrain_lmaczs.errors import ConfigError
from speechbrain_lmaczs.lmaczs.run_folder import check_clap_source, check_run_folder
from speechbrain_lmaczs.metrics import MetricAccumulator, faithfulness_metrics, zero_shot_accuracy

logger = logging.getLogger(__name__)


def clap_overrides(hparams):
    """Overrides of the checkpoint's CLAP settings: the non-null ``clap_backend`` / ``clap_source`` of the yaml."""
    overrides = {"clap_backend": hparams["clap_backend"], "clap_source": hparams["clap_source"]}
    return {key: value for key, value in overrides.items() if value not in (None, "")}


def check_evaluation_settings(settings):
    """Refuse an ``eval.yaml`` setting or a ``--checkpoint`` that cannot work, before anything is loaded or created.

    Parameters
    ----------
    settings : dict
        The plain settings of ``eval.yaml`` with the command line's overrides (see
        :func:`speechbrain_lmaczs.entry.read_settings`).

    Raises
    ------
    ConfigError
        A bad evaluation setting (:class:`EvalSettings`).
    FileNotFoundError
        ``--checkpoint`` is not a training output folder, or its CLAP is missing.
    """
    try:
        EvalSettings.from_hparams(settings)
    except ConfigError:
        raise
    except (TypeError, ValueError, KeyError) as err:
        raise ConfigError(" ".join(str(err).split())) from err
    check_run_folder(settings["checkpoint"], "--checkpoint")
    check_clap_source(settings["checkpoint"], clap_overrides(settings))


def run_evaluation(hparams, manifests, device="cpu", max_batches=None):
    """Load the checkpoint named by ``hparams["checkpoint"]`` and run :func:`evaluate` as the yaml says.

    Under torchrun, rank ``r`` evaluates shard ``r + 1`` of the world size and rank 0 then merges the shards; with
    ``hparams["shard"]`` (``"i/n"``) this process evaluates that shard only; without either, shards already in
    the output folder are merged (:mod:`.shards`), or else everything is evaluated here.

    Parameters
    ----------
    hparams : dict
        The loaded ``eval.yaml``.
    manifests : dict
        Output of :func:`prepare_evaluation_data`.
    device : str
        Where models and data go.
    max_batches : int, optional
        Batches per (method, condition) (``--debug``); None: all.

    Returns
    -------
    list of dict
        The rows of ``results.csv``.
    """
    from speechbrain_lmaczs.lmaczs.pretrained import load_trained

    rank, world_size = world()
    shard = None if hparams["shard"] in (None, "") else parse_shard(hparams["shard"])
    if shard is not None and world_size > 1:
        raise ValueError("Use either torchrun (its ranks are the shards) or --shard=i/n (one process each), not both.")
    if world_size > 1:
        shard = (rank + 1, world_size)
    checkpoint = hparams["checkpoint"]
    overrides = clap_overrides(hparams)
    model = load_trained(checkpoint, overrides=overrides, device=device)
    settings = EvalSettings.from_hparams(hparams, max_batches=max_batches)
    kwargs = dict(
        speech_manifest=manifests["speech"],
        template=hparams["prompt_template"],
        device=device,
        provenance={"checkpoint": os.path.abspath(checkpoint), "clap_overrides": overrides},
    )
    output_folder = hparams["output_folder"]
    if shard is None:
        counts = shard_counts(output_folder)
        if len(counts) > 1:
            raise ValueError(f"{output_folder}/{SHARDS_FOLDER} holds shards of different counts {sorted(counts)}: "
                             "keep the folders of one split only.")
        # Shards there: this is their merge (the same command, without --shard).
        return evaluate(model, manifests["eval"], output_folder, settings, merge=counts.pop() if counts else None,
                        **kwargs)
    rows = evaluate(model, manifests["eval"], shard_folder(output_folder, shard), settings, shard=shard, **kwargs)
    if world_size == 1 or rank != 0:
        return rows
    wait_for_shards(output_folder, world_size, [(m, c) for c in settings.conditions for m in settings.methods])
    return evaluate(model, manifests["eval"], output_folder, settings, merge=world_size, **kwargs)


def _sync(device):
    # CUDA kernels run asynchronously: without a sync the clock would stop before the work is done.
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _elapsed(start, device):
    _sync(device)
    return time.perf_counter() - start


class _Timing:
    """Explanation and forward seconds of a (method, condition); the first batch is a warm-up when others follow.

    The first batch pays for lazy imports (pytorch-grad-cam), allocator growth and kernel selection, none of which
    is the cost of the method.
    """

    def __init__(self):
        self.first = None
        self.explain = 0.0
        self.forward = 0.0
        self.clips = 0

    def add(self, explain_s, forward_s, n_clips):
        if self.first is None:
            self.first = (explain_s, forward_s, n_clips)
            return
        self.explain += explain_s
        self.forward += forward_s
        self.clips += n_clips

    def result(self):
        """(seconds per clip, explanation time / forward time)."""
        explain, forward, clips = (self.explain, self.forward, self.clips) if self.clips else self.first
        return explain / clips, explain / max(forward, 1e-12)



def _timed(classifier, x, device):
    """Logits of ``x`` and the seconds the forward took."""
    _sync(device)
    start = time.perf_counter()
    logits = classifier(x)
    return logits, _elapsed(start, device)


def evaluate_pair(
    setup, method, condition, interpreter, dataset, settings, row_writer, device, flush=None, partners=None, shard=None
):
    """Metrics of one (method, condition) over ``dataset`` (its batches of ``shard``, when given), streamed: the
    method's row and its reference row.

    ``partners`` (mixture condition): clip id -> class index of the clip mixed into it; with it, each clip is
    also explained for both sources' class prompts and scored by prompt selectivity.

    Returns
    -------
    list of dict
        The two results.csv rows: the method's masks (``mask="method"``) and the constant masks of their means
        (``mask="constant_mean"``).
    """
    classifier, domain = setup.classifier, setup.domain
    kinds = {kind: MetricAccumulator(VALUE_NAMES, row_writer=row_writer) for kind in MASK_KINDS}
    selectivity = {kind: MetricAccumulator((SELECTIVITY,)) for kind in MASK_KINDS}
    timing = _Timing()
    loader, total = batch_loader(dataset, settings, shard)
    for batch in tqdm(loader, total=total, desc=f"{method} | {condition}", unit="batch", dynamic_ncols=True):
        with torch.no_grad():
            x = domain.representation(batch.wav.data.to(device))
            logits, forward_p = _timed(classifier, x, device)
        targets = setup.targets(logits)
        _sync(device)
        start = time.perf_counter()
        masks = interpreter.explain(x, targets)
        explain_s = _elapsed(start, device)
        with torch.no_grad():
            p = torch.softmax(logits, dim=-1)
            logits_in, forward_o = _timed(classifier, domain.apply_mask(x, masks), device)
            logits_out, forward_q = _timed(classifier, domain.apply_mask(x, 1.0 - masks), device)
            o, q = torch.softmax(logits_in, dim=-1), torch.softmax(logits_out, dim=-1)
        # The reference is the median of the batch's three classification forwards (X, M*X, (1-M)*X): same cost,
        # and one busy moment of a shared machine does not skew the ratio.
        timing.add(explain_s, sorted((forward_p, forward_o, forward_q))[1], x.shape[0])
        legacy = settings.legacy_double_softmax
        values = {
            "method": faithfulness_metrics(p, o, q, masks, targets, legacy_double_softmax=legacy),
            "constant_mean": reference_metrics(classifier, domain, x, masks, p, targets, legacy),
        }
        labels = torch.as_tensor(batch.label).to(device)
        accuracy = zero_shot_accuracy(logits[:, : setup.n_classes], labels)
        n = x.shape[0]
        sel = dict.fromkeys(MASK_KINDS, torch.full((n,), float("nan")))
        if partners is not None:
            others = torch.tensor([partners[clip_id] for clip_id in batch.id], device=device)
            masks_a, masks_b = explain_sources(interpreter, x, masks, targets, labels, others)
            scores = mixture_selectivity(classifier, domain, x, masks_a, masks_b, labels, others, setup.n_classes)
            sel = dict(zip(MASK_KINDS, scores))
        predicted = logits[:, : setup.n_classes].argmax(dim=-1)
        for kind in MASK_KINDS:
            values[kind]["accuracy"] = accuracy
            defined = torch.isfinite(sel[kind])
            if defined.any():  # clips mixed with a clip of their own class have no selectivity
                selectivity[kind].update({SELECTIVITY: sel[kind][defined]})
            kinds[kind].update(
                values[kind],
                extra={
                    "method": [method] * n,
                    "condition": [condition] * n,
                    "mask": [kind] * n,
                    "id": list(batch.id),
                    "label": list(batch.class_string),
                    "predicted": [setup.labels[i] for i in predicted.tolist()],
                    "target": setup.target_names(targets),
                    SELECTIVITY: sel[kind].tolist(),
                },
            )
        if flush is not None:
            flush()
    seconds_per_clip, forward_ratio = timing.result()
    rows = []
    for kind in MASK_KINDS:
        summary = kinds[kind].summary()
        row = {"method": method, "condition": condition, "mask": kind}
        row.update({name: summary[name] for name in VALUE_NAMES})
        row[SELECTIVITY] = selectivity[kind].summary()[SELECTIVITY] if selectivity[kind].n else float("nan")
        row.update(
            n_clips=summary["n"],
            n_nonfinite=summary["n_nonfinite"],
            seconds_per_clip=seconds_per_clip,
            forward_ratio=forward_ratio,
            domain=domain.describe(),
        )
        rows.append(row)
    return rows


def evaluate(
    model,
    manifest,
    output_folder,
    settings=None,
    speech_manifest=None,
    template=DEFAULT_TEMPLATE,
    device="cpu",
    provenance=None,
    shard=None,
    merge=None,
):
    """Evaluate every (method, condition) pair of ``settings`` and write the result files (see the module doc).

    Parameters
    ----------
    model : TrainedLMACZS
        The CLAP, masking domain and trained decoder (:func:`~speechbrain_lmaczs.lmaczs.pretrained.load_trained`);
        its classifier is the one every method explains.
    manifest : str or dict
        Labelled evaluation manifest (also the pool of the ``mixture`` condition).
    output_folder : str
        Where the files go; a previous run's finished pairs there are skipped.
    settings : EvalSettings, optional
        Defaults: every method and condition, paper-like interpreter settings.
    speech_manifest : str or dict, optional
        Pool of the ``speech`` condition.
    template : str
        Prompt template of the class prompts.
    device : str
        Where the data goes (the model must already be there).
    provenance : dict, optional
        Facts that identify the classifier (e.g. the checkpoint path); part of the resume check.
    shard : tuple of int, optional
        ``(i, n)``: evaluate only shard ``i`` of ``n`` (1-based) into ``output_folder`` (see :mod:`.shards`); the
        sanity checks are left to the merge.
    merge : int, optional
        Compute nothing: check that the ``merge`` shards under ``output_folder`` finished with these settings and
        merge them (:func:`~speechbrain_lmaczs.evaluation.shards.merge_shards`).

    Returns
    -------
    list of dict
        The rows of ``results.csv`` (finished pairs, this run's and earlier ones).
    """
    settings = settings if settings is not None else EvalSettings()
    if "speech" in settings.conditions and speech_manifest is None:
        raise ValueError(
            "The speech condition needs speech recordings: pass speech_manifest (eval.py: speech_folder, or "
            "ljspeech_folder), or leave speech out of the conditions."
        )
    os.makedirs(output_folder, exist_ok=True)
    model.eval()
    setup = Setup(model, manifest, settings, template, device)
    fingerprint = dict(
        settings.fingerprint(), provenance=provenance or {}, data=data_digest(setup, manifest, settings)
    )
    info = setup.describe(settings, device)
    if merge is not None:

        def write_tables(rows, normalization):
            write_markdown(os.path.join(output_folder, RESULTS_MD), rows, normalization, info, settings)

        rows = merge_shards(output_folder, merge, fingerprint, settings, write_tables)
        _sanity_checks(setup, manifest, settings, output_folder, device)
        return sorted(rows, key=sort_key)
    if shard is not None:
        fingerprint["shard"] = shard_state(shard, settings)
    results_path = os.path.join(output_folder, RESULTS_CSV)
    per_clip_path = os.path.join(output_folder, PER_CLIP_CSV)
    rows = read_results(results_path)
    state = load_state(output_folder, fingerprint, has_results=bool(rows))
    finished = {(row["method"], row["condition"]) for row in rows}
    dropped = keep_finished_rows(per_clip_path, finished)
    if dropped:
        logger.info("Dropped %d per-clip rows of an interrupted (method, condition) pair.", dropped)
    write_state(output_folder, state)

    # Built once, before any clip: a wrong option fails now, not after hours of other methods.
    interpreters = {
        method: setup.interpreter(method, settings) for method in settings.methods
    }
    logger.info(
        "Evaluating %s under %s on %s (temperature %.4g)",
        list(settings.methods),
        list(settings.conditions),
        device,
        info["temperature"],
    )
    new_file = not os.path.isfile(per_clip_path) or os.path.getsize(per_clip_path) == 0
    with open(per_clip_path, "a", encoding="utf-8", newline="") as per_clip:
        writer = csv.DictWriter(per_clip, fieldnames=PER_CLIP_COLUMNS)
        if new_file:
            writer.writeheader()
        for condition in settings.conditions:
            todo = [m for m in settings.methods if (m, condition) not in finished]
            skipped = [m for m in settings.methods if (m, condition) in finished]
            if skipped:
                logger.info("%s: %s already in %s, skipped.", condition, skipped, RESULTS_CSV)
            if not todo:
                continue
            dataset = condition_dataset(setup, settings, manifest, condition, speech_manifest)
            partners = mixture_partners(setup, settings, manifest) if condition == "mixture" else None
            for method in todo:
                interpreter = interpreters[method]
                pair_rows = evaluate_pair(
                    setup, method, condition, interpreter, dataset, settings, writer, device, flush=per_clip.flush,
                    partners=partners, shard=shard,
                )
                # Commit order: per-clip rows on disk, then the state, then results.csv (the record of the pair).
                per_clip.flush()
                os.fsync(per_clip.fileno())
                state["normalisation"][method] = interpreter.normalization
                write_state(output_folder, state)
                rows.extend(pair_rows)
                finished.add((method, condition))
                write_results(results_path, rows)
                write_markdown(os.path.join(output_folder, RESULTS_MD), rows, state["normalisation"], info, settings)
                for row in pair_rows:
                    logger.info(
                        "%s (%s) | %s: %s", method, row["mask"], condition,
                        {k: round(row[k], 4) for k in VALUE_NAMES + (SELECTIVITY, "seconds_per_clip")},
                    )
    if shard is None:
        _sanity_checks(setup, manifest, settings, output_folder, device)
    write_markdown(os.path.join(output_folder, RESULTS_MD), rows, state["normalisation"], info, settings)
    return sorted(rows, key=sort_key)


def _sanity_checks(setup, manifest, settings, output_folder, device):
    """The sanity checks the settings ask for (once per evaluation: by the merge when it is sharded)."""
    if settings.sanity_similarity:
        similarity_check(setup, manifest, settings, output_folder, device)
    if settings.sanity_randomisation:
        randomization_check(setup, manifest, settings, output_folder, device)

