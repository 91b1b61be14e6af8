"""An evaluation split across processes: shards (``--shard=i/n`` or torchrun's ranks) and their exact merge.

Shard ``i`` of ``n`` evaluates every ``n``-th batch of every (method, condition), from the ``i``-th
(:func:`~speechbrain_lmaczs.evaluation.setup.batch_loader`), into ``<output_folder>/shards/<i>-of-<n>/``: a complete
evaluation folder of its own (``results.csv``, ``per_clip.csv``, ``eval_state.json``), so a killed shard resumes
like any evaluation. :func:`merge_shards` then rebuilds ``results.csv``, ``per_clip.csv``, ``results.md`` and
``eval_state.json`` of ``<output_folder>`` from the shards' per-clip rows, computing nothing again: the means are
those of one process that saw every clip (same batches, same order), ``n_clips`` is the whole set.
"""

import csv
import json
import logging
import math
import os
import time

from speechbrain_lmaczs.evaluation.store import (
    MASK_KINDS,
    PER_CLIP_COLUMNS,
    PER_CLIP_CSV,
    RESULTS_CSV,
    SELECTIVITY,
    STATE_JSON,
    VALUE_NAMES,
    read_results,
    write_csv,
    write_results,
    write_state,
)
from speechbrain_lmaczs.metrics import MetricAccumulator

logger = logging.getLogger(__name__)

SHARDS_FOLDER = "shards"
#: columns of results.csv that are timings of a shard's run: merged as clip-weighted means
TIMING_COLUMNS = ("seconds_per_clip", "forward_ratio")


def shard_folder(output_folder, shard):
    """Folder of shard ``(i, n)``: ``<output_folder>/shards/<i>-of-<n>``.

    >>> shard_folder("out", (2, 4))
    'out/shards/2-of-4'
    """
    return os.path.join(output_folder, SHARDS_FOLDER, f"{shard[0]}-of-{shard[1]}")


def shard_counts(output_folder):
    """The shard counts ``n`` of the shard folders under ``output_folder`` (empty when it has none)."""
    root = os.path.join(output_folder, SHARDS_FOLDER)
    if not os.path.isdir(root):
        return set()
    counts = set()
    for name in os.listdir(root):
        index, _, count = name.partition("-of-")
        if index.isdigit() and count.isdigit():
            counts.add(int(count))
    return counts


def shard_state(shard, settings):
    """What a shard records besides the settings: its place and batching (the merge restores the batch order)."""
    return {"index": shard[0], "count": shard[1], "batch_size": settings.batch_size}


def _pending(folder, pairs):
    """The (method, condition) pairs of ``pairs`` not yet in the shard ``folder``'s results.csv."""
    done = {(row["method"], row["condition"]) for row in read_results(os.path.join(folder, RESULTS_CSV))}
    return [pair for pair in pairs if pair not in done]


def wait_for_shards(output_folder, count, pairs, poll_s=2.0):
    """Block until every shard of ``count`` has finished ``pairs`` (torchrun's rank 0, before merging).

    torchrun ends the whole job when a rank fails, so a shard that never finishes never leaves this waiting alone.
    """
    waiting = None
    while True:
        pending = [i for i in range(1, count + 1) if _pending(shard_folder(output_folder, (i, count)), pairs)]
        if not pending:
            return
        if pending != waiting:
            logger.info("Waiting for shards %s of %d to finish before merging.", pending, count)
            waiting = pending
        time.sleep(poll_s)


def _read_per_clip(path):
    with open(path, encoding="utf-8", newline="") as fin:
        reader = csv.DictReader(fin)
        if tuple(reader.fieldnames or ()) != PER_CLIP_COLUMNS:
            raise ValueError(f"{path} has columns {reader.fieldnames}, not {list(PER_CLIP_COLUMNS)}.")
        return list(reader)


def _check_shard(folder, index, count, fingerprint, pairs):
    """The shard's state, after checking it finished ``pairs`` with the settings ``fingerprint``."""
    retry = f"run eval.py with the same options and --shard={index}/{count} (it resumes)"
    state_path = os.path.join(folder, STATE_JSON)
    if not os.path.isfile(state_path):
        raise ValueError(f"Shard {index}/{count} has not started ({folder} holds no {STATE_JSON}): {retry}.")
    with open(state_path, encoding="utf-8") as fin:
        state = json.load(fin)
    stored = {key: value for key, value in state["settings"].items() if key != "shard"}
    wanted = json.loads(json.dumps(fingerprint))
    if stored != wanted:
        changed = sorted(key for key in set(stored) | set(wanted) if stored.get(key) != wanted.get(key))
        raise ValueError(
            f"Shard {index}/{count} in {folder} was computed with other settings than this command (changed: "
            f"{changed}): merge with the options the shards were run with, or delete that folder and rerun it."
        )
    pending = _pending(folder, pairs)
    if pending:
        raise ValueError(f"Shard {index}/{count} has not finished {pending} in {folder}: {retry}.")
    return state


def _one_process_order(rows, shard, batch_size, kind):
    """Sort keys restoring one process's clip order: shard ``i``'s ``j``-th batch is batch ``i - 1 + j * n``, and
    within a batch the rows of each mask kind (:data:`MASK_KINDS`, in that order) follow each other."""
    index, count = shard
    return [((index - 1) + (k // batch_size) * count, MASK_KINDS.index(kind), k % batch_size) for k in range(len(rows))]


def merge_shards(output_folder, count, fingerprint, settings, write_tables):
    """Rebuild ``results.csv``, ``per_clip.csv`` and ``eval_state.json`` of ``output_folder`` from its shards.

    Parameters
    ----------
    output_folder : str
        Holds ``shards/<i>-of-<count>/`` for every ``i``.
    count : int
        Number of shards.
    fingerprint : dict
        Settings fingerprint of the merging command; every shard must have been computed with it.
    settings : EvalSettings
        The methods and conditions to merge (their order is the files' order).
    write_tables : callable
        ``write_tables(rows, normalization)`` writes ``results.md``.

    Returns
    -------
    list of dict
        The rows of ``results.csv``.
    """
    pairs = [(m, c) for c in settings.conditions for m in settings.methods]
    folders = [shard_folder(output_folder, (i, count)) for i in range(1, count + 1)]
    states = [_check_shard(folder, i, count, fingerprint, pairs) for i, folder in enumerate(folders, 1)]
    keys = [(m, c, kind) for m, c in pairs for kind in MASK_KINDS]
    per_key = {key: [] for key in keys}
    timings = {key: [] for key in keys}
    for i, (folder, state) in enumerate(zip(folders, states), 1):
        shard_rows = {key: [] for key in keys}
        for row in _read_per_clip(os.path.join(folder, PER_CLIP_CSV)):
            key = (row["method"], row["condition"], row["mask"])
            if key in shard_rows:
                shard_rows[key].append(row)
        for key, rows in shard_rows.items():
            order = _one_process_order(rows, (i, count), state["settings"]["shard"]["batch_size"], key[2])
            per_key[key].extend(zip(order, rows))
        for row in read_results(os.path.join(folder, RESULTS_CSV)):
            key = (row["method"], row["condition"], row["mask"])
            if key in timings:
                timings[key].append(row)
    merged_rows, per_clip = [], []
    for method, condition in pairs:
        pair_clips = []
        for kind in MASK_KINDS:
            keyed = sorted(per_key[(method, condition, kind)], key=lambda item: item[0])
            pair_clips.extend(keyed)
            accumulator = MetricAccumulator(VALUE_NAMES)
            selectivity = MetricAccumulator((SELECTIVITY,))
            for _, row in keyed:
                accumulator.update({name: [float(row[name])] for name in VALUE_NAMES})
                if math.isfinite(float(row[SELECTIVITY])):  # as in one process: clips without a value are left out
                    selectivity.update({SELECTIVITY: [float(row[SELECTIVITY])]})
            summary = accumulator.summary()
            result = {"method": method, "condition": condition, "mask": kind}
            result.update({name: summary[name] for name in VALUE_NAMES})
            result[SELECTIVITY] = selectivity.summary()[SELECTIVITY] if selectivity.n else float("nan")
            result.update(n_clips=summary["n"], n_nonfinite=summary["n_nonfinite"])
            shares = timings[(method, condition, kind)]
            for column in TIMING_COLUMNS:
                result[column] = sum(row[column] * row["n_clips"] for row in shares) / summary["n"]
            result["domain"] = shares[0]["domain"]
            merged_rows.append(result)
        per_clip.extend(row for _, row in sorted(pair_clips, key=lambda item: item[0]))
    normalization = {}
    for state in states:
        normalization.update(state["normalisation"])
    write_csv(os.path.join(output_folder, PER_CLIP_CSV), PER_CLIP_COLUMNS, per_clip)
    write_state(output_folder, {"settings": fingerprint, "normalisation": normalization, "merged_shards": count})
    write_results(os.path.join(output_folder, RESULTS_CSV), merged_rows)
    write_tables(merged_rows, normalization)
    logger.info("Merged %d shards (%d per-clip rows) into %s.", count, len(per_clip), output_folder)
    return merged_rows

