"""The result files of an evaluation and how a restart resumes from them (see the package documentation).

Every file is written through :func:`~speechbrain_lmaczs.files.atomic_write`: a crash never leaves half a file.
"""

import csv
import json
import os

from speechbrain_lmaczs.data.contamination import CONDITIONS
from speechbrain_lmaczs.evaluation.settings import METHODS
from speechbrain_lmaczs.files import atomic_write, write_json_atomic
from speechbrain_lmaczs.metrics import METRIC_NAMES

#: per-clip values averaged per (method, condition): the paper's metrics and the zero-shot accuracy
VALUE_NAMES = METRIC_NAMES + ("accuracy",)
#: prompt selectivity (:func:`~speechbrain_lmaczs.metrics.prompt_selectivity`): mixture condition only, NaN elsewhere
SELECTIVITY = "selectivity"
#: the ``mask`` column: the method's own masks, and the reference (a constant mask of each clip's mask mean)
MASK_KINDS = ("method", "constant_mean")
#: columns of results.csv; ``domain`` is the masking domain (name and mask_on) the masks were applied in
RESULT_COLUMNS = ("method", "condition", "mask") + VALUE_NAMES + (
    SELECTIVITY,
    "n_clips",
    "n_nonfinite",
    "seconds_per_clip",
    "forward_ratio",
    "domain",
)
#: columns of results.csv that are not numbers
TEXT_COLUMNS = ("method", "condition", "mask", "domain")
#: identifying columns of per_clip.csv, followed by :data:`VALUE_NAMES` and the selectivity
PER_CLIP_KEYS = ("method", "condition", "mask", "id", "label", "predicted", "target")
PER_CLIP_COLUMNS = PER_CLIP_KEYS + VALUE_NAMES + (SELECTIVITY,)

RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
PER_CLIP_CSV = "per_clip.csv"
STATE_JSON = "eval_state.json"
#: outputs of the sanity checks
SIMILARITY_CSV = "sanity_similarity.csv"
RANDOMIZATION_CSV = "sanity_randomisation.csv"


def write_state(output_folder, state):
    """Write ``eval_state.json`` (the settings the results were computed with, each method's normalization)."""
    write_json_atomic(os.path.join(output_folder, STATE_JSON), state, sort_keys=True)


def read_results(path):
    """Rows of a ``results.csv`` (numbers as floats, ``n_clips``/``n_nonfinite`` as ints); [] when absent."""
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8", newline="") as fin:
        reader = csv.DictReader(fin)
        if tuple(reader.fieldnames or ()) != RESULT_COLUMNS:
            raise ValueError(
                f"{path} has columns {reader.fieldnames}, not {list(RESULT_COLUMNS)}: it was not written by this "
                "evaluation. Use another output_folder."
            )
        rows = []
        for row in reader:
            for key in RESULT_COLUMNS:
                if key not in TEXT_COLUMNS:
                    row[key] = int(row[key]) if key in ("n_clips", "n_nonfinite") else float(row[key])
            rows.append(row)
    return rows


def sort_key(row):
    """Table order of a results row: condition, method (both in their registries' order), then its reference."""
    return (CONDITIONS.index(row["condition"]), METHODS.index(row["method"]), MASK_KINDS.index(row["mask"]))


def by_method(rows, condition="clean", mask="method"):
    """``{method: row}`` of the results rows of one condition and one kind of mask.

    ``mask="constant_mean"`` gives each method's reference row (its masks replaced by a constant mask of the same
    mean per clip, scored with the same metrics): the rows a table shows next to the methods' own.

    Examples
    --------
    >>> rows = [{"method": "ig", "condition": "clean", "mask": kind, "AI": ai}
    ...         for kind, ai in (("method", 40.0), ("constant_mean", 10.0))]
    >>> by_method(rows)["ig"]["AI"], by_method(rows, mask="constant_mean")["ig"]["AI"]
    (40.0, 10.0)
    """
    if mask not in MASK_KINDS:
        raise ValueError(f"mask must be one of {MASK_KINDS}, got {mask!r}.")
    return {row["method"]: row for row in rows if row["condition"] == condition and row["mask"] == mask}


def write_results(path, rows):
    """Write ``results.csv`` (rows in table order)."""
    def write(fout):
        writer = csv.DictWriter(fout, fieldnames=RESULT_COLUMNS)
        writer.writeheader()
        for row in sorted(rows, key=sort_key):
            writer.writerow({key: row[key] for key in RESULT_COLUMNS})

    atomic_write(path, write)


def keep_finished_rows(path, finished):
    """Drop the per-clip rows of every pair not in ``finished`` (an interrupted one), streaming the file."""
    if not os.path.isfile(path):
        return 0
    dropped = 0

    def write(fout):
        nonlocal dropped
        writer = csv.writer(fout)
        with open(path, encoding="utf-8", newline="") as fin:
            reader = csv.reader(fin)
            header = next(reader, None)
            if header is None:
                return
            if tuple(header) != PER_CLIP_COLUMNS:
                raise ValueError(
                    f"{path} has columns {header}, not {list(PER_CLIP_COLUMNS)}: it was not written by this "
                    "evaluation. Use another output_folder."
                )
            writer.writerow(header)
            for row in reader:
                # A row cut short by a crash belongs to the unfinished pair and goes too.
                if len(row) == len(header) and (row[0], row[1]) in finished:
                    writer.writerow(row)
                else:
                    dropped += 1

    atomic_write(path, write)
    return dropped


def load_state(output_folder, fingerprint, has_results):
    """The state of a previous run in ``output_folder`` (checked against ``fingerprint``), or a fresh one."""
    state_path = os.path.join(output_folder, STATE_JSON)
    results_path = os.path.join(output_folder, RESULTS_CSV)
    if not has_results:
        # Nothing finished yet: whatever an earlier attempt used, nothing computed with it is kept.
        return {"settings": fingerprint, "normalisation": {}}
    if not os.path.isfile(state_path):
        if os.path.isfile(results_path):
            raise ValueError(
                f"{results_path} exists but {STATE_JSON} does not, so its settings are unknown: use another "
                "output_folder, or delete results.csv and per_clip.csv to start over."
            )
        return {"settings": fingerprint, "normalisation": {}}
    with open(state_path, encoding="utf-8") as fin:
        state = json.load(fin)
    # JSON turns tuples into lists: compare in JSON form.
    wanted, stored = json.loads(json.dumps(fingerprint)), state["settings"]
    if stored != wanted:
        changed = sorted(key for key in set(stored) | set(wanted) if stored.get(key) != wanted.get(key))
        raise ValueError(
            f"{output_folder} holds results computed with other settings (changed: {changed}). Use another "
            f"output_folder, or delete {RESULTS_CSV}, {PER_CLIP_CSV} and {STATE_JSON} there to start over."
        )
    return state



def write_csv(path, columns, rows):
    """Write dict ``rows`` as a CSV with ``columns``."""
    def write(fout):
        writer = csv.DictWriter(fout, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(path, write)

