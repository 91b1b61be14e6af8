"""Figures, listenable WAVs and an HTML page for the explanations of one recording.

:func:`write_report` writes into one folder:

- ``original.wav``: the input as the explanations are heard against (mono, at its own rate);
- ``<method>_<prompt>.wav``: each listenable explanation, exactly as long as the input;
- ``<method>_<prompt>.png``: input spectrogram, mask and masked spectrogram, with the prompt and its probability;
- ``report.html``: every figure with an audio player for the original and each explanation (relative links, so the
  folder can be moved or served as is).
"""

import html
import json
import logging
import os
from urllib.parse import quote

import numpy as np
import soundfile as sf
import torch
from matplotlib.figure import Figure

from speechbrain_lmaczs.explain import DB_RANGE, ExplainError
from speechbrain_lmaczs.files import write_json_atomic
from speechbrain_lmaczs.recipe import slug

logger = logging.getLogger(__name__)

ORIGINAL = "original.wav"
REPORT = "report.html"

#: how method names read in titles
METHOD_TITLES = {
    "lmaczs": "LMAC-ZS",
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "smoothgrad": "SmoothGrad",
    "ig": "Integrated Gradients",
    "scorecam": "Score-CAM",
    "gscorecam": "gScore-CAM",
}


def method_title(method):
    """Display name of a method.

    >>> method_title("gradcam++"), method_title("my_method")
    ('Grad-CAM++', 'my_method')
    """
    return METHOD_TITLES.get(method, method)


def heard_spectrogram(spectrogram_db, mask, db_range=DB_RANGE):
    """The spectrogram of what one hears: the mask scales the magnitude, so it adds ``20 log10(mask)`` dB.

    Multiplying the dB values themselves (what the Mel-domain classifier sees) would paint masked-out regions at
    0 dB, i.e. loud; this shows them as silent instead. A zero mask floors at ``db_range`` below the maximum.

    Parameters
    ----------
    spectrogram_db : torch.Tensor
        (time, freq) in dB.
    mask : torch.Tensor
        (time, freq) in [0, 1].
    db_range : float
        Dynamic range shown.

    Returns
    -------
    torch.Tensor
        (time, freq) in dB.

    Example
    -------
    >>> heard_spectrogram(torch.tensor([[0.0, -10.0]]), torch.tensor([[0.1, 0.0]]))
    tensor([[-20., -80.]])
    """
    floor = spectrogram_db.max() - db_range
    gain = 20.0 * torch.log10(mask.clamp_min(10.0 ** (-db_range / 20.0)))
    return (spectrogram_db + gain).clamp_min(floor)


def _frequency_axis(ax, recording):
    """Label the frequency rows in Hz; mel rows are evenly spaced in mel, so ticks name their centre frequency."""
    freqs = recording.frequencies.numpy()
    rows = np.linspace(0, len(freqs) - 1, num=min(6, len(freqs))).round().astype(int)
    ax.set_yticks(rows)
    ax.set_yticklabels([f"{freqs[r]:.0f}" if freqs[r] < 1000 else f"{freqs[r] / 1000:.1f}k" for r in rows])
    scale = "mel bands" if recording.frequency_scale == "mel" else "linear"
    ax.set_ylabel(f"Frequency (Hz, {scale})")


def explanation_figure(recording, explanation):
    """Input spectrogram, mask and masked spectrogram of one explanation, stacked over a shared time axis.

    Parameters
    ----------
    recording : RecordingExplanation
    explanation : Explanation

    Returns
    -------
    matplotlib.figure.Figure
    """
    spec = recording.spectrogram.float()
    heard = heard_spectrogram(spec, explanation.mask.float())
    vmax = float(spec.max())
    hop = recording.frame_seconds
    # Frame k is centred at k * hop.
    extent = (-hop / 2, (spec.shape[0] - 0.5) * hop, -0.5, spec.shape[1] - 0.5)
    fig = Figure(figsize=(10, 8), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    db = {"cmap": "magma", "vmin": vmax - DB_RANGE, "vmax": vmax}
    panels = [
        (spec, "Input spectrogram", "dB", db),
        (explanation.mask.float(), "Mask", "mask", {"cmap": "viridis", "vmin": 0.0, "vmax": 1.0}),
        (heard, "Masked spectrogram (what the explanation plays)", "dB", db),
    ]
    for ax, (data, title, unit, colours) in zip(axes, panels):
        image = ax.imshow(
            data.T.numpy(), origin="lower", aspect="auto", extent=extent, interpolation="nearest", **colours
        )
        ax.set_title(title, fontsize=10)
        _frequency_axis(ax, recording)
        fig.colorbar(image, ax=ax, label=unit, pad=0.01)
    axes[-1].set_xlabel("Time (s)")
    name = os.path.basename(recording.path) if recording.path else "recording"
    fig.suptitle(
        f'"{explanation.prompt}": p = {explanation.probability:.3f}\n'
        f"{method_title(explanation.method)} explanation of {name}",
        fontsize=12,
    )
    return fig


def unique_name(base, taken):
    """``base``, or ``base_2``, ``base_3``... the first not in ``taken`` (which it joins).

    >>> taken = {"dog"}
    >>> unique_name("dog", taken), unique_name("dog", taken), sorted(taken)
    ('dog_2', 'dog_3', ['dog', 'dog_2', 'dog_3'])
    """
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


def output_names(results):
    """File stem of each explanation, unique across methods and prompts.

    Parameters
    ----------
    results : list of RecordingExplanation

    Returns
    -------
    list of list of str
        ``names[i][j]`` for ``results[i].explanations[j]``.
    """
    taken = {os.path.splitext(ORIGINAL)[0], os.path.splitext(REPORT)[0]}
    names = []
    for result in results:
        row = []
        for explanation in result.explanations:
            # "gradcam++" must not become "gradcam".
            base = slug(f"{explanation.method.replace('+', 'plus')}_{explanation.prompt}", max_len=70)
            row.append(unique_name(base, taken))
        names.append(row)
    return names


def planned_files(results, folder):
    """Every path :func:`write_report` writes for ``results`` in ``folder``."""
    paths = [os.path.join(folder, ORIGINAL), os.path.join(folder, REPORT)]
    for row in output_names(results):
        for name in row:
            paths += [os.path.join(folder, name + ".wav"), os.path.join(folder, name + ".png")]
    return paths


#: file in an output folder listing the files :func:`write_report` wrote there (the only ones ``--overwrite``
#: may replace)
WRITTEN = ".lmaczs_written.json"


def written_files(folder):
    """Names of the files an earlier :func:`write_report` wrote in ``folder`` (its :data:`WRITTEN` record)."""
    try:
        with open(os.path.join(folder, WRITTEN), encoding="utf-8") as fin:
            names = json.load(fin)
    except (OSError, ValueError):
        return set()
    return {name for name in names if isinstance(name, str)} if isinstance(names, list) else set()


def check_writable(paths, overwrite=False, protected=()):
    """Refuse to write over existing files (unless ``overwrite`` and this tool wrote them) and ever over
    ``protected`` ones (the input).

    Raises
    ------
    ExplainError
        Naming the first file in the way.
    """
    for path in paths:
        for keep in protected:
            if keep and os.path.exists(path) and os.path.samefile(path, keep):
                raise ExplainError(f"{path} is the input itself: choose another output folder.")
        if os.path.isdir(path):
            raise ExplainError(f"{path} is a folder: remove it or choose another output folder.")
        if os.path.exists(path) and not overwrite:
            raise ExplainError(f"{path} already exists: choose another output folder, or pass --overwrite.")
        if os.path.exists(path) and os.path.basename(path) not in written_files(os.path.dirname(path) or "."):
            raise ExplainError(
                f"{path} was not written by lmaczs (--overwrite replaces only the files of an earlier report): "
                "move it or choose another output folder."
            )


def _write_wav(path, waveform, sample_rate):
    data = waveform.detach().cpu().numpy().astype(np.float32)
    # 16-bit PCM plays everywhere; a float input louder than full scale stays float rather than clipping.
    subtype = "PCM_16" if np.abs(data).max(initial=0.0) <= 1.0 else "FLOAT"
    sf.write(path, data, sample_rate, subtype=subtype)


_SCRIPT = """
// Each player shows its duration once the browser has read the file (and records it for automated checks).
for (const audio of document.querySelectorAll("audio")) {
  const label = audio.parentElement.querySelector(".duration");
  const loaded = () => {
    audio.dataset.duration = String(audio.duration);
    label.textContent = audio.duration.toFixed(2) + " s";
  };
  audio.addEventListener("loadedmetadata", loaded);
  audio.addEventListener("error", () => {
    audio.dataset.error = String(audio.error ? audio.error.code : "unknown");
    label.textContent = "cannot play this file";
  });
  if (audio.readyState >= 1) loaded();
}
"""

_STYLE = """
body { font-family: sans-serif; max-width: 70em; margin: 1em auto; padding: 0 1em; color: #222; }
figure { margin: 1.5em 0; padding: 1em; border: 1px solid #ddd; border-radius: 6px; }
figure img { max-width: 100%; }
.player { display: flex; align-items: center; gap: 1em; margin: 0.5em 0; }
.duration { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; } td, th { padding: 0.2em 0.8em; border-bottom: 1px solid #eee; text-align: left; }
"""


def _player(src, role, label):
    return (
        f'<div class="player"><span>{html.escape(label)}</span>'
        f'<audio controls preload="metadata" src="{html.escape(quote(src))}" data-role="{role}"></audio>'
        f'<span class="duration"></span></div>'
    )


def report_html(results, names, title):
    """The HTML page of :func:`write_report` (figures and players linked by relative paths).

    Parameters
    ----------
    results : list of RecordingExplanation
        One per method, all of the same recording.
    names : list of list of str
        File stems from :func:`output_names`.
    title : str
        Page title.

    Returns
    -------
    str
    """
    first = results[0]
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>{first.duration:.2f} s at {first.sample_rate} Hz, explained in {first.n_windows} model window(s). "
        "Each explanation is the mask applied to the recording's spectrogram with its original phase: play it "
        "against the original.</p>",
        _player(ORIGINAL, "original", "Original (mono)"),
    ]
    for result, row in zip(results, names):
        parts.append(f'<section class="method" data-method="{esc(result.method)}">')
        parts.append(f"<h2>{esc(method_title(result.method))}</h2>")
        for explanation, name in zip(result.explanations, row):
            caption = f"\u201c{explanation.prompt}\u201d, p = {explanation.probability:.3f}"
            parts += [
                f'<figure class="explanation" data-prompt="{esc(explanation.prompt)}">',
                f'<img src="{esc(quote(name + ".png"))}" alt="{esc("Spectrogram, mask and explanation: " + caption)}">',
                f"<figcaption>{esc(caption)}</figcaption>",
                _player(name + ".wav", "explanation", "Explanation"),
                "</figure>",
            ]
        ranked = torch.argsort(result.probabilities, descending=True)[:10].tolist()
        rows = "".join(
            f"<tr><td>{esc(result.candidates[i])}</td><td>{float(result.probabilities[i]):.3f}</td></tr>"
            for i in ranked
        )
        parts.append(f"<details><summary>Zero-shot probabilities</summary><table>{rows}</table></details>")
        parts.append("</section>")
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"


def write_report(results, folder, overwrite=False):
    """Write the WAVs, figures and ``report.html`` of one recording's explanations.

    Parameters
    ----------
    results : list of RecordingExplanation
        One per method, all of the same recording.
    folder : str
        Output folder (created if needed).
    overwrite : bool
        Replace files of an earlier report; without it an existing file is an error (nothing is written).

    Returns
    -------
    str
        Path of ``report.html``.
    """
    if not results:
        raise ExplainError("Nothing to report: no explanations were computed.")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ExplainError(f"{folder} is a file: give a folder for the output.")
    check_writable(planned_files(results, folder), overwrite, protected=[r.path for r in results])
    os.makedirs(folder, exist_ok=True)
    first = results[0]
    names = output_names(results)
    # Recorded before writing: a file this run writes is known as its own even if the run stops half-way.
    planned = {os.path.basename(path) for path in planned_files(results, folder)}
    write_json_atomic(os.path.join(folder, WRITTEN), sorted(written_files(folder) | planned))
    _write_wav(os.path.join(folder, ORIGINAL), first.waveform, first.sample_rate)
    for result, row in zip(results, names):
        for explanation, name in zip(result.explanations, row):
            _write_wav(os.path.join(folder, name + ".wav"), explanation.waveform, result.sample_rate)
            explanation_figure(result, explanation).savefig(os.path.join(folder, name + ".png"), dpi=100)
    name = os.path.basename(first.path) if first.path else "a recording"
    report = os.path.join(folder, REPORT)
    with open(report, "w", encoding="utf-8") as fout:
        fout.write(report_html(results, names, f"Explanations of {name}"))
    logger.info("Wrote %s", report)
    return report
