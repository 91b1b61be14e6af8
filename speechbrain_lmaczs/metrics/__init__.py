"""Metrics of explanation masks, per clip: faithfulness to a zero-shot classifier, statistics of the mask alone,
localization against a known support, and a streaming accumulator of their means.

Every public name is importable from here (``from speechbrain_lmaczs.metrics import faithfulness_metrics``):

- :mod:`.faithfulness_scores`: AI, AD, AG, FF, Fid-In from the classifier's probabilities, the eight-column
  :func:`faithfulness_metrics` and the zero-shot accuracy (definitions and open decisions in its docstring);
- :mod:`.mask_statistics`: SPS, COMP, MM, and the constant reference mask of a method's masks;
- :mod:`.selectivity`: prompt selectivity on a two-source mixture (no ground truth needed);
- :mod:`.localization`: top-k% IoU and the pointing game (both independent of the order of ties), the mask's mass
  inside the support and its average precision, against a ground-truth support;
- :mod:`.accumulator`: :class:`MetricAccumulator`.

The British spellings ``localisation_iou``, ``localisation_metrics`` and ``LOCALISATION_NAMES`` of earlier
versions still work; they are the same objects as the ``localization_*`` names.

>>> localisation_metrics is localization_metrics
True
"""

from speechbrain_lmaczs.metrics.accumulator import MetricAccumulator
from speechbrain_lmaczs.metrics.faithfulness_scores import (
    METRIC_NAMES,
    average_drop,
    average_gain,
    average_increase,
    faithfulness,
    faithfulness_metrics,
    input_fidelity,
    predicted_class,
    zero_shot_accuracy,
)
from speechbrain_lmaczs.metrics.localization import (
    LOCALIZATION_NAMES,
    average_precision,
    fractional_iou,
    localization_iou,
    localization_metrics,
    mass_in_support,
    pointing_game,
    top_k_membership,
    top_k_region,
)
from speechbrain_lmaczs.metrics.mask_statistics import GINI_EPS, complexity, constant_mean_mask, mask_mean, sparseness
from speechbrain_lmaczs.metrics.selectivity import prompt_selectivity

# Earlier (British) spellings, kept for code written against them.
LOCALISATION_NAMES = LOCALIZATION_NAMES
localisation_iou = localization_iou
localisation_metrics = localization_metrics

__all__ = [
    "GINI_EPS",
    "LOCALIZATION_NAMES",
    "METRIC_NAMES",
    "MetricAccumulator",
    "average_drop",
    "average_gain",
    "average_increase",
    "average_precision",
    "complexity",
    "constant_mean_mask",
    "faithfulness",
    "faithfulness_metrics",
    "fractional_iou",
    "input_fidelity",
    "localization_iou",
    "localization_metrics",
    "mask_mean",
    "mass_in_support",
    "pointing_game",
    "predicted_class",
    "prompt_selectivity",
    "sparseness",
    "top_k_membership",
    "top_k_region",
    "zero_shot_accuracy",
]
