"""Our numbers beside the paper's: ``paper_comparison.csv``, ``paper_comparison.md`` and the claims' verdicts.

Inputs are plain rows, so the comparison can be checked on a hand-made table:

- ``results``: one dict per (dataset, domain, condition, method) with the metric means and ``accuracy`` (the rows
  of the eval recipe's ``results.csv`` plus ``dataset`` and ``domain``; :func:`read_eval_results` reads them);
- ``similarity``: one dict per (domain, method) with ``pearson_r`` (``sanity_similarity.csv`` plus ``domain``);
- ``randomisation``: one dict per (domain, method, step) with ``blocks`` and ``ssim`` (``sanity_randomisation.csv``).

Every paper number gets a row (``not measured`` when ours is missing); every claim the paper's tables and sanity
checks rest on gets a verdict: ``held``, ``not held`` or ``not measured``.

>>> rows = [dict(dataset="esc50", domain="stft", condition="clean", method=m, AI=ai, AD=ad)
...         for m, ai, ad in (("lmaczs", 40.0, 5.0), ("gradcam++", 30.0, 9.0))]
>>> [r["difference"] for r in comparison_rows(rows) if r["table"] == "ESC-50 STFT" and r["method"] == "LMAC-ZS"][:2]
[-3.35, 0.71]
>>> for c in claims(rows):
...     if c["claim"].startswith("ESC-50 STFT: LMAC-ZS") and c["claim"].endswith(("AI", "AD")):
...         print(c["claim"], "|", c["verdict"])
ESC-50 STFT: LMAC-ZS above GradCAM++ on AI | held
ESC-50 STFT: LMAC-ZS below GradCAM++ on AD | held
"""

import csv
import datetime
import math
import os

from speechbrain_lmaczs.files import atomic_write, write_text_atomic
from speechbrain_lmaczs.reproduce.paper import (
    DIRECTIONS,
    METRICS,
    NOT_IN_REFERENCE,
    PAPER_NAMES,
    PAPER_TABLES,
    RANDOMISED_BLOCKS,
    SIMILARITY_R,
)

#: columns of paper_comparison.csv
CSV_COLUMNS = (
    "table",
    "method",
    "metric",
    "paper",
    "ours",
    "difference",
    "relative_difference",
    "better",
    "paper_rank",
    "our_rank",
    "n_methods",
)
HELD, NOT_HELD, NOT_MEASURED = "held", "not held", "not measured"
#: name of the zero-shot classifier's row (its accuracy, not an explanation method)
CLASSIFIER = "zero-shot classifier"
DOMAIN_NAMES = {"mel": "Mel", "stft": "STFT"}
DATASET_NAMES = {"esc50": "ESC-50", "urbansound8k": "UrbanSound8K"}


def _number(value):
    """A finite float, or None for a missing/empty/non-finite value."""
    if value in (None, ""):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _ours(results):
    """(dataset, domain, condition) -> paper method name -> {metric: value} (accuracy under ``"accuracy"``)."""
    index = {}
    for row in results:
        key = (row["dataset"], row["domain"], row["condition"])
        name = PAPER_NAMES.get(row["method"], row["method"])
        values = {m: _number(row.get(m)) for m in (*METRICS, "accuracy")}
        index.setdefault(key, {})[name] = {m: v for m, v in values.items() if v is not None}
    return index


def _better(a, b, metric):
    """True when ``a`` is strictly better than ``b`` on ``metric``."""
    return a > b if DIRECTIONS[metric] == "higher" else a < b


def _ranks(values, metric):
    """Method -> rank (1 = best; ties share the better rank) of {method: value}; {} for a metric without a direction.

    >>> _ranks({"a": 3.0, "b": 1.0, "c": 3.0}, "AD")
    {'a': 2, 'b': 1, 'c': 2}
    """
    if DIRECTIONS[metric] == "reported":
        return {}
    return {m: 1 + sum(_better(other, v, metric) for other in values.values()) for m, v in values.items()}


def _round(value, digits=6):
    return None if value is None else round(value, digits)


def comparison_rows(results):
    """One row per (paper table, method, metric) and one per table for the zero-shot accuracy.

    Returns
    -------
    list of dict
        Keys :data:`CSV_COLUMNS`: ``difference`` = ours - paper, ``relative_difference`` = difference / |paper|,
        ``better`` = the metric's better direction, ranks among the table's methods (paper: among the paper's;
        ours: among the same methods, measured by us). Missing values are None.
    """
    ours = _ours(results)
    rows = []
    for table_name, table in PAPER_TABLES.items():
        measured = ours.get((table.dataset, table.domain, table.condition), {})
        for metric in METRICS:
            paper_values = {method: values[metric] for method, values in table.values.items()}
            our_values = {
                method: measured[method][metric]
                for method in table.values
                if metric in measured.get(method, {})
            }
            paper_ranks, our_ranks = _ranks(paper_values, metric), _ranks(our_values, metric)
            for method, paper in paper_values.items():
                rows.append(
                    _row(table_name, method, metric, paper, our_values.get(method), paper_ranks, our_ranks)
                    | {"n_methods": len(paper_values)}
                )
        accuracies = [v["accuracy"] for v in measured.values() if "accuracy" in v]
        # The accuracy is the classifier's, the same in every method's row: their mean guards against rounding.
        accuracy = sum(accuracies) / len(accuracies) if accuracies else None
        rows.append(_row(table_name, CLASSIFIER, "accuracy", table.accuracy, accuracy, {}, {}) | {"n_methods": ""})
    return rows


def _row(table, method, metric, paper, ours, paper_ranks, our_ranks):
    difference = None if ours is None else ours - paper
    relative = None if difference is None or paper == 0 else difference / abs(paper)
    return {
        "table": table,
        "method": method,
        "metric": metric,
        "paper": paper,
        "ours": _round(ours),
        "difference": _round(difference),
        "relative_difference": _round(relative, 4),
        "better": DIRECTIONS[metric],
        "paper_rank": paper_ranks.get(method, ""),
        "our_rank": our_ranks.get(method, "") if ours is not None else "",
    }


# ------------------------------------------------------------------------------------------------ claims
def _claim(text, table, paper, ours, verdict):
    return {"claim": text, "table": table, "paper": paper, "ours": ours, "verdict": verdict}


def _fmt(value):
    return "n/a" if value is None else f"{value:.4g}"


def _best_claims(table_name, table, measured):
    """For each metric with a direction: the method the paper ranks best stays best among the table's methods."""
    out = []
    for metric in METRICS:
        if DIRECTIONS[metric] == "reported":
            continue
        paper_values = {method: values[metric] for method, values in table.values.items()}
        ranks = _ranks(paper_values, metric)
        best = [m for m, r in ranks.items() if r == 1]
        if len(best) != 1:
            continue  # a tie in the paper makes no claim
        best = best[0]
        text = f"{table_name}: {best} best on {metric} ({DIRECTIONS[metric]} is better)"
        paper = f"{best} {paper_values[best]:g}; next {_runner_up(paper_values, best, metric)}"
        our_values = {m: measured.get(m, {}).get(metric) for m in table.values}
        if any(v is None for v in our_values.values()):
            missing = sorted(m for m, v in our_values.items() if v is None)
            out.append(_claim(text, table_name, paper, f"missing: {', '.join(missing)}", NOT_MEASURED))
            continue
        held = all(_better(our_values[best], v, metric) for m, v in our_values.items() if m != best)
        ours = f"{best} {_fmt(our_values[best])}; " + (
            f"next {_runner_up(our_values, best, metric)}"
            if held
            else f"best {_runner_up(our_values, None, metric)}"
        )
        out.append(_claim(text, table_name, paper, ours, HELD if held else NOT_HELD))
    return out


def _runner_up(values, excluded, metric):
    """'Method value' of the best method other than ``excluded``."""
    others = {m: v for m, v in values.items() if m != excluded}
    ranks = _ranks(others, metric)
    method = min(others, key=lambda m: (ranks[m], m))
    return f"{method} {_fmt(others[method])}"


def _pair_claims(table_name, table, measured, method="LMAC-ZS", baseline="GradCAM++"):
    """LMAC-ZS against the paper's main baseline on every metric with a direction, in the paper's order."""
    out = []
    for metric in METRICS:
        if DIRECTIONS[metric] == "reported":
            continue
        a, b = table.values[method][metric], table.values[baseline][metric]
        if a == b:
            continue
        winner, loser = (method, baseline) if _better(a, b, metric) else (baseline, method)
        word = {"higher": "above", "lower": "below"}[DIRECTIONS[metric]]
        text = f"{table_name}: {winner} {word} {loser} on {metric}"
        paper = f"{method} {a:g} vs {baseline} {b:g}"
        ours_a = measured.get(method, {}).get(metric)
        ours_b = measured.get(baseline, {}).get(metric)
        if ours_a is None or ours_b is None:
            out.append(_claim(text, table_name, paper, "n/a", NOT_MEASURED))
            continue
        values = {method: ours_a, baseline: ours_b}
        held = _better(values[winner], values[loser], metric)
        ours = f"{method} {_fmt(ours_a)} vs {baseline} {_fmt(ours_b)}"
        out.append(_claim(text, table_name, paper, ours, HELD if held else NOT_HELD))
    return out


def _accuracy_claim(measured_by_table):
    mel, stft = PAPER_TABLES["ESC-50 Mel"], PAPER_TABLES["ESC-50 STFT"]
    text = "ESC-50: zero-shot accuracy of the Mel setup above the STFT setup's"
    paper = f"{mel.accuracy:g} % vs {stft.accuracy:g} %"
    ours = [measured_by_table.get(name) for name in ("ESC-50 Mel", "ESC-50 STFT")]
    if None in ours:
        return _claim(text, "ESC-50", paper, "n/a", NOT_MEASURED)
    return _claim(
        text, "ESC-50", paper, f"{ours[0]:.4g} % vs {ours[1]:.4g} %", HELD if ours[0] > ours[1] else NOT_HELD
    )


def _sanity_claims(similarity, randomisation):
    """The two sanity checks, per masking domain measured (both domains listed even when not measured)."""
    out = []
    r = {
        (row["domain"], PAPER_NAMES.get(row["method"], row["method"])): _number(row["pearson_r"]) for row in similarity
    }
    ssim = {}
    for row in randomisation:
        key = (row["domain"], PAPER_NAMES.get(row["method"], row["method"]))
        ssim.setdefault(key, {})[int(row["step"])] = (row["blocks"], _number(row["ssim"]))
    for domain, domain_name in DOMAIN_NAMES.items():
        table = f"sanity, ESC-50 {domain_name}"
        lmac, grad = r.get((domain, "LMAC-ZS")), r.get((domain, "GradCAM++"))
        text = f"{table}: LMAC-ZS mask mean correlates with the audio-prompt similarity (Pearson r >= {SIMILARITY_R})"
        paper = "masks shrink when the similarity is low (scatter plot)"
        if lmac is None:
            out.append(_claim(text, table, paper, "n/a", NOT_MEASURED))
        else:
            out.append(_claim(text, table, paper, f"r = {lmac:.3f}", HELD if lmac >= SIMILARITY_R else NOT_HELD))
        text = f"{table}: GradCAM++ mask mean does not (Pearson r < {SIMILARITY_R})"
        paper = "no relation (scatter plot)"
        if grad is None:
            out.append(_claim(text, table, paper, "n/a", NOT_MEASURED))
        else:
            out.append(_claim(text, table, paper, f"r = {grad:.3f}", HELD if grad < SIMILARITY_R else NOT_HELD))
        text = (
            f"{table}: with {RANDOMISED_BLOCKS} encoder blocks randomised, LMAC-ZS's mask has changed more than "
            "GradCAM++'s (lower SSIM to the original)"
        )
        paper = f"LMAC-ZS changes sharply after {RANDOMISED_BLOCKS} blocks, GradCAM++ does not"
        lmac = ssim.get((domain, "LMAC-ZS"), {}).get(RANDOMISED_BLOCKS)
        grad = ssim.get((domain, "GradCAM++"), {}).get(RANDOMISED_BLOCKS)
        if lmac is None or grad is None or None in (lmac[1], grad[1]):
            out.append(_claim(text, table, paper, "n/a", NOT_MEASURED))
        else:
            ours = f"SSIM down to {lmac[0]}: LMAC-ZS {lmac[1]:.3f} vs GradCAM++ {grad[1]:.3f}"
            out.append(_claim(text, table, paper, ours, HELD if lmac[1] < grad[1] else NOT_HELD))
    return out


def claims(results, similarity=(), randomisation=()):
    """Verdicts on the orderings the paper's claims rest on.

    Per paper table: the best method on each metric, and LMAC-ZS against GradCAM++ on each metric (both in the
    paper's order); the zero-shot accuracy of the two setups; and the two sanity checks per masking domain
    (thresholds :data:`~speechbrain_lmaczs.reproduce.paper.SIMILARITY_R` and
    :data:`~speechbrain_lmaczs.reproduce.paper.RANDOMISED_BLOCKS`).

    Returns
    -------
    list of dict
        ``claim``, ``table``, ``paper``, ``ours`` (evidence, as text) and ``verdict`` (held / not held / not
        measured).
    """
    ours = _ours(results)
    out, accuracies = [], {}
    for table_name, table in PAPER_TABLES.items():
        measured = ours.get((table.dataset, table.domain, table.condition), {})
        out += _best_claims(table_name, table, measured)
        out += _pair_claims(table_name, table, measured)
        accuracy = [v["accuracy"] for v in measured.values() if "accuracy" in v]
        if accuracy:
            accuracies[table_name] = sum(accuracy) / len(accuracy)
    out.append(_accuracy_claim(accuracies))
    return out + _sanity_claims(similarity, randomisation)


# ------------------------------------------------------------------------------------------------ reading results
def _read_csv(path):
    with open(path, encoding="utf-8", newline="") as fin:
        return list(csv.DictReader(fin))


def read_eval_results(runs):
    """Rows of the evaluation runs' ``results.csv`` and sanity CSVs, tagged with their dataset and domain.

    Parameters
    ----------
    runs : dict
        (dataset, domain) -> output folder of an eval recipe run. Missing files are skipped.

    Returns
    -------
    tuple of list
        ``(results, similarity, randomisation)`` as :func:`write_comparison` takes them.
    """
    results, similarity, randomisation = [], [], []
    for (dataset, domain), folder in sorted(runs.items()):
        tag = {"dataset": dataset, "domain": domain}
        for name, rows in (
            ("results.csv", results),
            ("sanity_similarity.csv", similarity),
            ("sanity_randomisation.csv", randomisation),
        ):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                # results.csv also holds each method's constant-mean reference row: the paper's tables compare the
                # methods' own masks (rows of older runs have no mask column)
                rows += [{**row, **tag} for row in _read_csv(path) if row.get("mask", "method") == "method"]
    return results, similarity, randomisation


# ------------------------------------------------------------------------------------------------ writing
def _cell(value, digits=4):
    return "" if value is None else f"{value:.{digits}g}"


def _paper_table_markdown(table_name, rows):
    mine = [r for r in rows if r["table"] == table_name and r["method"] != CLASSIFIER]
    methods = list(dict.fromkeys(r["method"] for r in mine))
    lines = [
        f"### {table_name} (clean; paper accuracy {PAPER_TABLES[table_name].accuracy:g} %)",
        "",
        "Each cell: paper -> ours (ours - paper); `[rank paper/ours]` among the table's methods. "
        "Higher is better except AD and COMP; MM is reported.",
        "",
        "| method | " + " | ".join(METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for method in methods:
        cells = []
        for metric in METRICS:
            (row,) = [r for r in mine if r["method"] == method and r["metric"] == metric]
            if row["ours"] is None:
                cells.append(f"{row['paper']:g} -> not measured")
                continue
            rank = f" [{row['paper_rank']}/{row['our_rank']}]" if row["paper_rank"] != "" else ""
            cells.append(f"{row['paper']:g} -> {_cell(row['ours'])} ({row['difference']:+.3g}){rank}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _ours_only_markdown(results):
    """Tables of our results that have no paper numbers (other conditions and datasets)."""
    covered = {(t.dataset, t.domain, t.condition) for t in PAPER_TABLES.values()}
    keys = sorted({(r["dataset"], r["domain"], r["condition"]) for r in results} - covered)
    if not keys:
        return []
    lines = ["", "## Ours only (no paper numbers in the reference)", "", NOT_IN_REFERENCE, ""]
    ours = _ours(results)
    for key in keys:
        dataset, domain, condition = key
        table = ours[key]
        accuracy = [v["accuracy"] for v in table.values() if "accuracy" in v]
        acc = f"; accuracy {accuracy[0]:.4g} %" if accuracy else ""
        lines += [
            f"### {DATASET_NAMES.get(dataset, dataset)} {DOMAIN_NAMES.get(domain, domain)}, {condition}{acc}",
            "",
            "| method | " + " | ".join(METRICS) + " |",
            "|---|" + "---|" * len(METRICS),
        ]
        for method, values in table.items():
            lines.append(f"| {method} | " + " | ".join(_cell(values.get(m)) for m in METRICS) + " |")
        lines.append("")
    return lines


def comparison_markdown(rows, claim_rows, results, notes=()):
    """The text of paper_comparison.md."""
    counts = {v: sum(c["verdict"] == v for c in claim_rows) for v in (HELD, NOT_HELD, NOT_MEASURED)}
    lines = [
        "# LMAC-ZS reproduction: our numbers beside the paper's",
        "",
        f"Written {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by "
        "`recipes/ESC50/interpret/reproduce.py`. Paper numbers: Paissan et al., NeurIPS 2024, ESC-50 in-domain "
        "tables (Mel and STFT masking) and zero-shot accuracies. " + NOT_IN_REFERENCE,
        "",
    ]
    lines += [f"- {note}" for note in notes]
    lines += [
        "",
        f"## Claims: {counts[HELD]} held, {counts[NOT_HELD]} not held, {counts[NOT_MEASURED]} not measured",
        "",
        "| claim | paper | ours | verdict |",
        "|---|---|---|---|",
    ]
    lines += [f"| {c['claim']} | {c['paper']} | {c['ours']} | **{c['verdict']}** |" for c in claim_rows]
    lines += ["", "## Zero-shot accuracy (percent, clean ESC-50)", "", "| setup | paper | ours | ours - paper |"]
    lines += ["|---|---|---|---|"]
    for row in rows:
        if row["method"] == CLASSIFIER:
            diff = "" if row["difference"] is None else f"{row['difference']:+.3g}"
            ours = "not measured" if row["ours"] is None else _cell(row["ours"])
            lines.append(f"| {row['table']} | {row['paper']:g} | {ours} | {diff} |")
    lines += ["", "## The paper's tables", ""]
    for table_name in PAPER_TABLES:
        lines += _paper_table_markdown(table_name, rows) + [""]
    lines += _ours_only_markdown(results)
    return "\n".join(lines).rstrip() + "\n"


def write_comparison(folder, results, similarity=(), randomisation=(), notes=()):
    """Write ``paper_comparison.csv`` and ``paper_comparison.md`` into ``folder`` (atomically).

    Parameters
    ----------
    folder : str
        Destination folder (created if needed).
    results, similarity, randomisation : list of dict
        See the module doc (:func:`read_eval_results` reads them from eval recipe runs).
    notes : sequence of str
        Lines added to the head of the markdown (provenance: CLAP, settings, folders).

    Returns
    -------
    tuple
        ``(rows, claim_rows)``: the CSV rows and the claims with their verdicts.
    """
    os.makedirs(folder, exist_ok=True)
    rows = comparison_rows(results)
    claim_rows = claims(results, similarity, randomisation)

    def write_csv(fout):
        writer = csv.DictWriter(fout, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows({k: ("" if row[k] is None else row[k]) for k in CSV_COLUMNS} for row in rows)

    atomic_write(os.path.join(folder, "paper_comparison.csv"), write_csv)
    write_text_atomic(
        os.path.join(folder, "paper_comparison.md"), comparison_markdown(rows, claim_rows, results, notes)
    )
    return rows, claim_rows
