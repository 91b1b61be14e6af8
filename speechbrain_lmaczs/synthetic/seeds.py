"""The synthetic benchmark over seeds and configurations, summarised as mean, std and min per metric.

``python -m speechbrain_lmaczs.demo --seeds 0 1 2`` runs :func:`~speechbrain_lmaczs.synthetic.demo.run` once per
seed and configuration (:data:`~speechbrain_lmaczs.synthetic.configs.CONFIGS`); the seed sets the small CLAP,
the data and the LMAC-ZS decoder together. ``--decoder_seeds`` then retrains only the decoder, with other seeds, on
the first seed's small CLAP and data, so that the spread due to the decoder's training alone can be told from the
spread over whole benchmarks. Layout under the output folder::

    <config>/seed_<S>/                   a whole demo run (results.csv, clap/, data/, lmaczs/, eval/)
    <config>/seed_<S>/decoder_<D>/       the decoder-seed runs (results.csv, lmaczs/, eval/): methods that use the
                                         trained decoder only, the others do not depend on it
    summary.csv, summary.md              over the seeds (:data:`SUMMARY_COLUMNS`)
    summary_decoder_seeds.csv, .md       over the decoder seeds (same columns)

Every step reuses what an earlier call built with the same options, so a rerun, or a longer list of seeds, only
computes what is new.
"""

import csv
import logging
import math
from pathlib import Path

from speechbrain_lmaczs.evaluation import METHODS
from speechbrain_lmaczs.files import atomic_write, write_text_atomic
from speechbrain_lmaczs.interpreters import INTERPRETERS
from speechbrain_lmaczs.synthetic.configs import CONFIGS
from speechbrain_lmaczs.synthetic.demo import COLUMNS, run

logger = logging.getLogger(__name__)

#: columns of summary.csv
SUMMARY_COLUMNS = ("config", "method", "metric", "mean", "std", "min", "n_seeds")
#: the metrics summarised: every number of a demo's results.csv
SUMMARY_METRICS = tuple(c for c in COLUMNS if c != "method")


def summarize(results):
    """Mean, standard deviation and minimum of every metric over seeds.

    Parameters
    ----------
    results : dict
        config -> list (one per seed) of lists of results.csv rows (dicts with ``method`` and the metrics).

    Returns
    -------
    list of dict
        Rows with :data:`SUMMARY_COLUMNS`, in config, method (table order), metric order. ``std`` is the sample
        standard deviation (n - 1; 0 for one seed); NaN values (e.g. a metric with nothing to score) are left out,
        and ``n_seeds`` counts the values that entered.

    Example
    -------
    >>> runs = {"default": [[{"method": "ig", "IoU": 0.5}], [{"method": "ig", "IoU": 0.7}]]}
    >>> row = [r for r in summarize(runs) if r["metric"] == "IoU"][0]
    >>> row["mean"], round(row["std"], 4), row["min"], row["n_seeds"]
    (0.6, 0.1414, 0.5, 2)
    """
    rows = []
    for config, per_seed in results.items():
        methods = [m for m in METHODS if any(row["method"] == m for rows_ in per_seed for row in rows_)]
        for method in methods:
            for metric in SUMMARY_METRICS:
                values = [
                    float(row[metric])
                    for rows_ in per_seed
                    for row in rows_
                    if row["method"] == method and metric in row and row[metric] != ""
                ]
                values = [v for v in values if not math.isnan(v)]
                if not values:
                    continue
                mean = sum(values) / len(values)
                std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
                rows.append(
                    {"config": config, "method": method, "metric": metric, "mean": mean, "std": std,
                     "min": min(values), "n_seeds": len(values)}
                )
    return rows


def write_summary(rows, path, title):
    """``path`` (.csv, :data:`SUMMARY_COLUMNS`) and the same path with ``.md``: a table per configuration, a row
    per method, ``mean ± std (min)`` per metric."""
    path = Path(path)

    def write_csv(f):
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(path, write_csv)
    lines = [f"# {title}", "", "Each cell: mean ± std (min) over the seeds; n = number of seeds.", ""]
    for config in dict.fromkeys(row["config"] for row in rows):
        here = [row for row in rows if row["config"] == config]
        metrics = [m for m in SUMMARY_METRICS if any(row["metric"] == m for row in here)]
        lines += [f"## {config}", "", "| method | n | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
        for method in dict.fromkeys(row["method"] for row in here):
            cells = {row["metric"]: row for row in here if row["method"] == method}
            n = max(row["n_seeds"] for row in cells.values())
            values = [
                f"{cells[m]['mean']:.3g} ± {cells[m]['std']:.2g} ({cells[m]['min']:.3g})" if m in cells else ""
                for m in metrics
            ]
            lines.append(f"| {method} | {n} | " + " | ".join(values) + " |")
        lines.append("")
    write_text_atomic(path.with_suffix(".md"), "\n".join(lines))
    return path


def run_seeds(output, seeds, configs=None, methods=None, decoder_seeds=None, **demo_options):
    """The benchmark over ``seeds`` for each configuration, and optionally over decoder seeds; writes the summaries.

    Parameters
    ----------
    output : str
        Output folder (layout in the module docstring).
    seeds : list of int
        Seeds of whole benchmarks (small CLAP, data and decoder).
    configs : list of str, optional
        Configurations (default: all of :data:`CONFIGS`).
    methods : list of str, optional
        Methods (default: all).
    decoder_seeds : list of int, optional
        Seeds of the decoder alone, trained on the first seed's small CLAP and data.
    **demo_options
        Passed to :func:`~speechbrain_lmaczs.synthetic.demo.run` (``quick``, ``preset``, ``clap_options``,
        ``recipes``, ``device``).

    Returns
    -------
    dict
        ``{"seeds": rows of summary.csv, "decoder_seeds": rows of summary_decoder_seeds.csv (absent without
        decoder seeds)}``.
    """
    if not seeds:
        raise ValueError("run_seeds needs at least one seed.")
    configs = list(CONFIGS) if configs is None else list(configs)
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise ValueError(f"Unknown configuration(s) {unknown}: choose among {sorted(CONFIGS)}.")
    out = Path(output)
    results, decoder_results = {}, {}
    for config in configs:
        for seed in seeds:
            logger.info("Benchmark: configuration %s, seed %d", config, seed)
            rows = run(str(out / config / f"seed_{seed}"), seed=seed, config=config, methods=methods, figures=False,
                       **demo_options)
            results.setdefault(config, []).append(rows)
    summary = {"seeds": summarize(results)}
    write_summary(summary["seeds"], out / "summary.csv", f"Synthetic benchmark over seeds {list(seeds)}")
    if decoder_seeds:
        decoder_methods = [m for m in (methods or METHODS) if INTERPRETERS[m].needs_model]
        first = out / "{config}" / f"seed_{seeds[0]}"
        for config in configs:
            shared = Path(str(first).format(config=config))
            for decoder_seed in decoder_seeds:
                logger.info("Benchmark: configuration %s, seed %d, decoder seed %d", config, seeds[0], decoder_seed)
                rows = run(str(shared / f"decoder_{decoder_seed}"), seed=seeds[0], config=config,
                           decoder_seed=decoder_seed, methods=decoder_methods, shared=str(shared), figures=False,
                           **demo_options)
                decoder_results.setdefault(config, []).append(rows)
        summary["decoder_seeds"] = summarize(decoder_results)
        write_summary(
            summary["decoder_seeds"], out / "summary_decoder_seeds.csv",
            f"Synthetic benchmark over decoder seeds {list(decoder_seeds)} (small CLAP and data of seed {seeds[0]})",
        )
    logger.info("Summary: %s", out / "summary.csv")
    return summary
