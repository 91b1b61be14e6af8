"""Estimated GPU time and disk space of the reproduction's steps (estimates, not measurements).

No GPU run of the full chain has been made by this project yet, so every figure here is derived from numbers
measured elsewhere and says so:

- one CNN14 classification forward of the MS-CLAP 2022 audio tower: 4,330 clips/s (fp32, batch 64, H100; the cost
  anchors of the reference notes, ``clap-backends.md``);
- the cost of each interpreter in such forwards: ``docs/performance.md`` (CNN14, batch 16, CPU ratios measured by
  ``benchmarks/explain_speed.py`` with the eval recipe's settings: SmoothGrad 50 copies, IG 50 steps, ScoreCAM on
  all 2,048 channels, GScoreCAM on 10 % of them), scaled linearly for other step counts;
- training: the paper's own figure, about one hour per epoch of Clotho (19,195 caption pairs) on one 24 GB GPU at
  batch 2 (``method.md``), scaled by the number of pairs and epochs.

An evaluation estimate is a throughput bound: the expensive methods (ScoreCAM, GScoreCAM, IG, SmoothGrad) run the
encoder on batches of 50-64 masked or noisy copies, close to the anchor's batch, but small batches, other GPUs and
data loading make the real time longer.

>>> round(evaluation_seconds(2000, 4) / 3600, 2)
1.31
>>> round(training_seconds(19195, 2) / 3600, 2)
2.0
"""

#: CNN14 forwards per second on a GPU (clap-backends.md: H100, torch 2.11, fp32, batch 64)
GPU_FORWARDS_PER_S = 4330.0
#: explanation cost per clip in classification forwards (docs/performance.md, CNN14, batch 16, recipe settings)
EXPLAIN_FORWARDS = {
    "gradcam": 1.02,
    "gradcam++": 2.08,
    "smoothgrad": 114.0,
    "ig": 104.0,
    "scorecam": 2093.0,
    "gscorecam": 208.0,
    "lmaczs": 1.21,
}
#: the settings the ratios above were measured with (eval.yaml's defaults)
BENCHMARK_SETTINGS = {"smoothgrad_n_samples": 50, "ig_n_steps": 50, "gscorecam_top_fraction": 0.1}
#: forwards per clip besides the explanation: the classification of X, M * X and (1 - M) * X
METRIC_FORWARDS = 3
#: paper (method.md): about one hour per epoch of Clotho, batch 2, one 24 GB GPU
PAPER_SECONDS_PER_EPOCH = 3600.0
CLOTHO_PAIRS = 3839 * 5
#: nominal sizes of the datasets, used before their manifests exist
NOMINAL_ITEMS = {"esc50": 2000, "urbansound8k": 8732, "clotho": CLOTHO_PAIRS}
#: GB on disk, estimated from the datasets' durations at 16 bits (download = archive, kept until unpacked)
DISK_GB = {
    "esc50": {"download": 0.6, "unpacked": 0.9, "what": "2,000 x 5 s at 44.1 kHz"},
    "clotho": {"download": 7.6, "unpacked": 7.6, "what": "3,839 clips of 15-30 s at 44.1 kHz (~22 s on average)"},
    "ljspeech": {"download": 2.6, "unpacked": 3.8, "what": "13,100 clips, ~24 h at 22.05 kHz"},
    "clap": {"download": 0.8, "unpacked": 0.8, "what": "~197M fp32 parameters: CNN14 85M, BERT 110M, projections"},
}


def explanation_forwards(method, options=None):
    """Classification forwards one explanation by ``method`` costs per clip, for the eval recipe's ``options``.

    >>> explanation_forwards("ig", {"ig_n_steps": 25})
    52.0
    """
    options = {**BENCHMARK_SETTINGS, **(options or {})}
    cost = EXPLAIN_FORWARDS[method]
    if method == "smoothgrad":
        cost *= float(options["smoothgrad_n_samples"]) / BENCHMARK_SETTINGS["smoothgrad_n_samples"]
    elif method == "ig":
        cost *= float(options["ig_n_steps"]) / BENCHMARK_SETTINGS["ig_n_steps"]
    elif method == "gscorecam":
        cost *= float(options["gscorecam_top_fraction"]) / BENCHMARK_SETTINGS["gscorecam_top_fraction"]
    return cost


def evaluation_seconds(n_clips, n_conditions, methods=tuple(EXPLAIN_FORWARDS), options=None):
    """Estimated GPU seconds of an evaluation: clips x conditions x (explanation + 3 forwards) per method."""
    per_clip = sum(explanation_forwards(m, options) + METRIC_FORWARDS for m in methods)
    return n_clips * n_conditions * per_clip / GPU_FORWARDS_PER_S


def sanity_seconds(n_clips, n_prompts, n_blocks=6, methods=("gradcam++", "lmaczs"), options=None):
    """Estimated GPU seconds of the two sanity checks (similarity: clips x prompts; randomisation: 1 + blocks)."""
    per_explanation = sum(explanation_forwards(m, options) + 1 for m in methods)
    return n_clips * (n_prompts + 1 + n_blocks) * per_explanation / GPU_FORWARDS_PER_S


def training_seconds(n_pairs, epochs):
    """Estimated GPU seconds of training on ``n_pairs`` caption pairs, from the paper's ~1 h per Clotho epoch."""
    return PAPER_SECONDS_PER_EPOCH * epochs * n_pairs / CLOTHO_PAIRS


def format_duration(seconds):
    """Short human form of a duration.

    >>> format_duration(42), format_duration(3 * 3600 + 600), format_duration(None)
    ('42 s', '3.2 h', '-')
    """
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
