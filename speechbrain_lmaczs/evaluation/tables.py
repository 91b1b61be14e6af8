"""``results.md``: the paper's table layout, each method's normalization, the AD variant, cost and sanity checks."""

import csv
import json
import math
import os

from speechbrain_lmaczs.data.contamination import CONDITIONS
from speechbrain_lmaczs.evaluation.settings import METHODS
from speechbrain_lmaczs.evaluation.store import RANDOMIZATION_CSV, SELECTIVITY, SIMILARITY_CSV, sort_key
from speechbrain_lmaczs.files import write_text_atomic
from speechbrain_lmaczs.interpreters import INTERPRETERS
from speechbrain_lmaczs.metrics import METRIC_NAMES

#: names used in results.md and the figures: each interpreter class's ``display_name``
DISPLAY_NAMES = {name: cls.display_name for name, cls in INTERPRETERS.items()}

#: AD variants, as results.md states them
AD_VARIANTS = {
    False: "the paper's formula, 100 * max(0, p_c - o_c) / p_c on the probabilities (no second softmax)",
    True: "SpeechBrain L-MAC's legacy variant (a second softmax over the probabilities before the formula)",
}



def _format(name, value):
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    if name in ("AI", "AD", "AG", "COMP", "accuracy", SELECTIVITY):
        return f"{value:.2f}"
    return f"{value:.3f}"


def write_markdown(path, rows, normalization, info, settings):
    """results.md: the paper's table layout (one block per condition), normalizations, AD variant and cost.

    ``normalization`` maps each method to how its saliency became a mask (the state's record).
    """
    rows = sorted(rows, key=sort_key)
    lines = [
        "# Faithfulness of explanations of a zero-shot CLAP classifier",
        "",
        f"- Classifier: CLAP `{info['backend']}`, {info['n_classes']} class prompts "
        f"(e.g. \"{info['template_example']}\"), "
        + (
            f"logits = {info['temperature']:.4g} (the checkpoint's exp(logit_scale)) x cosine"
            if info["use_logit_scale"]
            else "logits = raw cosine (temperature 1)"
        )
        + "; the same temperature for every method.",
        f"- Masking domain: `{info['domain']}`; every method explains the same representation X; p, o, q = softmax "
        "of the classifier on X and on X masked by M and by 1 - M as this domain masks (the paper's log-mel "
        "masking: M * X, (1 - M) * X); across masking domains only localization scores compare.",
        "- *const.* rows: the method's masks replaced by a constant mask equal to each clip's mask mean, scored "
        "the same way: what the mask's shape adds beyond its size is the difference to the row above.",
        "- PS (prompt selectivity, mixture only): the clip and its contaminant are each explained for their own "
        "class prompt; PS = 100 x mean over the two prompts of p(own class | masked mixture) - p(other source's "
        "class | masked mixture), softmax over the class prompts (0: no better than the unmasked mixture; clips "
        "mixed with a clip of their own class left out).",
        f"- Explained class: {info['target']}.",
        f"- Contamination: {settings.snr_db:g} dB SNR, deterministic per clip (seed {settings.seed}).",
        f"- AD: {AD_VARIANTS[bool(settings.legacy_double_softmax)]}.",
        "- Higher is better except AD and COMP (lower) and MM (reported). AI, AD, AG and accuracy are percentages.",
        "",
        "| method | AI | AD | AG | FF | Fid-In | SPS | COMP | MM | PS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for condition in CONDITIONS:
        block = [row for row in rows if row["condition"] == condition]
        if not block:
            continue
        first = block[0]
        lines.append(
            f"| *{condition} (accuracy {_format('accuracy', first['accuracy'])} %, {first['n_clips']} clips)* "
            "| | | | | | | | | |"
        )
        for row in block:
            cells = " | ".join(_format(name, row[name]) for name in METRIC_NAMES + (SELECTIVITY,))
            flag = f" ({row['n_nonfinite']} clips with a non-finite value left out)" if row["n_nonfinite"] else ""
            name = DISPLAY_NAMES[row["method"]]
            name = name if row["mask"] == "method" else f"*{name} const.*"
            lines.append(f"| {name}{flag} | {cells} |")
    methods = [m for m in METHODS if any(row["method"] == m for row in rows)]
    lines += ["", "## From saliency to mask", "", "| method | normalisation |", "|---|---|"]
    lines += [f"| {DISPLAY_NAMES[m]} | {normalization.get(m, 'n/a')} |" for m in methods]
    lines += [
        "",
        f"## Cost per clip ({info['device']})",
        "",
        "Explanation time per clip, and as a multiple of one classification forward of the same batch (mean over "
        "the conditions evaluated; the first batch of each pair is a warm-up and not counted when others follow).",
        "",
        "| method | seconds per clip | x forward |",
        "|---|---|---|",
    ]
    for method in methods:
        mine = [row for row in rows if row["method"] == method and row["mask"] == "method"]
        clips = sum(row["n_clips"] for row in mine)
        seconds = sum(row["seconds_per_clip"] * row["n_clips"] for row in mine) / clips
        ratio = sum(row["forward_ratio"] * row["n_clips"] for row in mine) / clips
        lines.append(f"| {DISPLAY_NAMES[method]} | {seconds:.4g} | {ratio:.3g} |")
    options = {m: settings.options(m) for m in methods if settings.options(m)}
    if options:
        lines += ["", f"Interpreter options: `{json.dumps(options, sort_keys=True)}`."]
    lines += _sanity_markdown(os.path.dirname(os.path.abspath(path)))
    write_text_atomic(path, "\n".join(lines) + "\n")


def _sanity_markdown(folder):
    """Sections summarising the sanity checks whose CSVs are in ``folder``."""
    lines = []
    similarity = os.path.join(folder, SIMILARITY_CSV)
    if os.path.isfile(similarity):
        with open(similarity, encoding="utf-8", newline="") as fin:
            rows = list(csv.DictReader(fin))
        lines += [
            "",
            "## Sanity check: mask mean vs audio-prompt similarity",
            "",
            "Pearson r between the mask mean and the cosine similarity of the clip and the explained prompt "
            "(sanity_similarity.png).",
            "",
            "| method | Pearson r | points |",
            "|---|---|---|",
        ]
        lines += [f"| {DISPLAY_NAMES[r['method']]} | {float(r['pearson_r']):.3f} | {r['n_points']} |" for r in rows]
    randomization = os.path.join(folder, RANDOMIZATION_CSV)
    if os.path.isfile(randomization):
        with open(randomization, encoding="utf-8", newline="") as fin:
            rows = list(csv.DictReader(fin))
        blocks = list(dict.fromkeys(r["blocks"] for r in rows))
        methods = list(dict.fromkeys(r["method"] for r in rows))
        ssim_of = {(r["method"], r["blocks"]): float(r["ssim"]) for r in rows}
        lines += [
            "",
            "## Sanity check: cascading randomisation of the audio encoder",
            "",
            "Mean SSIM between the original mask and the mask after re-initialising the encoder from its top block "
            "down to the named one (sanity_randomisation.png); low is good: the explanation depends on the model.",
            "",
            "| method | " + " | ".join(blocks) + " |",
            "|---|" + "---|" * len(blocks),
        ]
        for method in methods:
            lines.append(
                f"| {DISPLAY_NAMES[method]} | " + " | ".join(f"{ssim_of[(method, b)]:.3f}" for b in blocks) + " |"
            )
    return lines

