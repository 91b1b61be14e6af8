"""Head-to-head evaluation of interpreters of a zero-shot CLAP classifier (the LMAC-ZS paper's tables).

Every method explains the SAME zero-shot classifier on the SAME representation ``X`` (the masking domain of the
trained LMAC-ZS checkpoint), for the same target (the zero-shot decision ``c^``, or one fixed prompt), with the
same temperature (the checkpoint's logit scale). For each clip, ``p``, ``o`` and ``q`` are the softmax outputs of
the classifier on ``X``, ``M * X`` and ``(1 - M) * X`` (masked as the masking domain masks); :func:`~speechbrain_lmaczs.metrics.faithfulness_metrics`
turns them into the paper's metrics. Each contamination condition (clean, mixture, white noise, speech at a given
SNR) is deterministic per clip, so every method sees the same contaminated input.

Files written to the output folder:

- ``results.csv``: two rows per (method, condition), told apart by ``mask``: ``"method"`` (the method's masks)
  and ``"constant_mean"`` (its reference: each clip's mask replaced by a constant mask of the same mean, scored
  the same way, see :mod:`.scoring`); the metric means, the zero-shot ``accuracy`` (percent), ``selectivity``
  (prompt selectivity, mixture condition only, NaN elsewhere), ``n_clips``, ``n_nonfinite`` (clips with a
  non-finite metric, left out of the means), ``seconds_per_clip`` (explanation time) and ``forward_ratio``
  (explanation time over one classification forward of the same batch), and ``domain`` (the masking domain);
- ``per_clip.csv``: every metric of every clip, with method, condition, mask kind, clip id, label, predicted and
  explained class; rows are written as they come, so memory does not grow with the dataset;
- ``results.md``: the table in the paper's layout, with the AD variant, each method's mask normalization and the
  cost of each method;
- ``eval_state.json``: the settings the results were computed with (a restart with other settings is refused);
- with the sanity checks on: ``sanity_similarity.csv`` / ``_points.csv`` / ``.png`` (mask mean vs audio-prompt
  similarity, Pearson r per method) and ``sanity_randomisation.csv`` / ``.png`` (cascading randomization of the
  audio encoder, SSIM between the original and the new explanation per randomized block).

Resuming: ``results.csv`` is the record of finished pairs; it is rewritten (atomically) only after a pair's
per-clip rows are on disk. A restarted run skips the pairs it lists and first drops from ``per_clip.csv`` every row
of a pair it does not list (the pair that was interrupted), so no row is ever duplicated.

The modules, in the order a run uses them: :mod:`.settings` (what to run, from ``eval.yaml``), :mod:`.setup` (the
data, classifier, prompts and target every pair shares), :mod:`.run` (the loop), :mod:`.scoring` (reference rows,
prompt selectivity), :mod:`.store` (result files and resume), :mod:`.tables` (``results.md``), :mod:`.sanity_checks`
and :mod:`.shards` (an evaluation split across processes, torchrun's ranks or ``--shard=i/n`` jobs, and the merge
of their files).
"""

from speechbrain_lmaczs.evaluation.run import (
    check_evaluation_settings,
    clap_overrides,
    evaluate,
    evaluate_pair,
    run_evaluation,
)
from speechbrain_lmaczs.evaluation.sanity_checks import (
    RANDOMIZATION_BLOCKS,
    block_label,
    randomization_blocks,
    randomization_check,
    similarity_check,
)
from speechbrain_lmaczs.evaluation.settings import METHODS, EvalSettings
from speechbrain_lmaczs.evaluation.scoring import mixture_selectivity, reference_metrics
from speechbrain_lmaczs.evaluation.setup import make_interpreter, prepare_evaluation_data
from speechbrain_lmaczs.evaluation.store import (
    MASK_KINDS,
    PER_CLIP_COLUMNS,
    PER_CLIP_CSV,
    PER_CLIP_KEYS,
    RESULT_COLUMNS,
    RESULTS_CSV,
    RESULTS_MD,
    SELECTIVITY,
    STATE_JSON,
    VALUE_NAMES,
    by_method,
    read_results,
)
from speechbrain_lmaczs.evaluation.tables import AD_VARIANTS, DISPLAY_NAMES, write_markdown

#: former (British) spellings, kept for code written against them
RANDOMISATION_BLOCKS = RANDOMIZATION_BLOCKS
randomisation_blocks = randomization_blocks
randomisation_check = randomization_check

__all__ = [
    "check_evaluation_settings",
    "AD_VARIANTS",
    "DISPLAY_NAMES",
    "MASK_KINDS",
    "METHODS",
    "PER_CLIP_COLUMNS",
    "PER_CLIP_CSV",
    "PER_CLIP_KEYS",
    "RANDOMIZATION_BLOCKS",
    "RESULTS_CSV",
    "RESULTS_MD",
    "RESULT_COLUMNS",
    "SELECTIVITY",
    "STATE_JSON",
    "VALUE_NAMES",
    "EvalSettings",
    "block_label",
    "by_method",
    "clap_overrides",
    "evaluate",
    "evaluate_pair",
    "make_interpreter",
    "mixture_selectivity",
    "prepare_evaluation_data",
    "randomization_blocks",
    "randomization_check",
    "read_results",
    "reference_metrics",
    "run_evaluation",
    "similarity_check",
    "write_markdown",
]
