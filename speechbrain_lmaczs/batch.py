"""Explain many recordings at once: every audio file of a folder, or every entry of a JSON manifest.

:func:`collect_inputs` turns what the user gave into a list of :class:`Input` (a folder is searched recursively for
audio files; a manifest is SpeechBrain's ``{id: {"wav": path, ...}}``); :func:`explain_inputs` explains each one
into its own sub-folder (the report of :func:`speechbrain_lmaczs.report.write_report`), skipping and recording the
files that fail, then writes ``index.html`` (a link to every report, and what was not explained) and
``summary.csv`` (a row per file, method and prompt).
"""

import csv
import html
import io
import json
import logging
import os
from dataclasses import dataclass, field
from urllib.parse import quote

import soundfile as sf
from tqdm import tqdm

from speechbrain_lmaczs.explain import ExplainError, read_recording
from speechbrain_lmaczs.files import write_text_atomic
from speechbrain_lmaczs.recipe import slug
from speechbrain_lmaczs.report import REPORT, check_writable, method_title, output_names, unique_name, write_report

logger = logging.getLogger(__name__)

INDEX = "index.html"
SUMMARY = "summary.csv"
SUMMARY_COLUMNS = ["file", "prompt", "probability", "mask_mean", "explanation_wav", "method"]

#: file extensions read as audio in a folder: what this libsndfile reads (RAW needs settings a file does not carry)
AUDIO_EXTENSIONS = frozenset("." + name.lower() for name in sf.available_formats() if name != "RAW") | {".aif"}


@dataclass
class Input:
    """One recording to explain: its name (the sub-folder of its report) and its path."""

    name: str
    path: str


@dataclass
class BatchOutcome:
    """What :func:`explain_inputs` did.

    Attributes
    ----------
    rows : list of dict
        The rows of ``summary.csv``.
    failed : list of tuple
        ``(path, reason)`` of each input that could not be explained.
    skipped : list of str
        Files of the folder that are not audio (never tried).
    index : str
        Path of ``index.html``.
    """

    rows: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    index: str = ""


def is_batch(path):
    """Whether ``path`` names a folder or a JSON manifest (rather than one audio file).

    >>> is_batch("clips/train.json"), is_batch("clip.wav")
    (True, False)
    """
    return os.path.isdir(path) or os.fspath(path).lower().endswith(".json")


def _unique_names(relative_paths):
    """A distinct folder-safe name per input, from its path relative to the folder or its manifest id.

    >>> _unique_names(["a/dog.wav", "a_dog.flac", "b.wav"])
    ['a_dog', 'a_dog_2', 'b']
    """
    taken = set()
    return [unique_name(slug(os.path.splitext(rel)[0], max_len=80), taken) for rel in relative_paths]


def folder_inputs(folder):
    """The audio files under ``folder`` (recursively, sorted) and the other files, which are skipped.

    Returns
    -------
    tuple
        ``(inputs, skipped)``: list of :class:`Input` and list of paths.
    """
    audio, skipped = [], []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            is_audio = os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS
            (audio if is_audio else skipped).append(path)
    names = _unique_names([os.path.relpath(p, folder) for p in audio])
    return [Input(name, path) for name, path in zip(names, audio)], skipped


def manifest_inputs(manifest):
    """The entries of a SpeechBrain JSON manifest (``{id: {"wav": path, ...}}``).

    Relative paths are read from the manifest's folder, and ``{data_root}`` in a path stands for that folder too
    (SpeechBrain's replacement convention).

    Raises
    ------
    ExplainError
        When the file is not such a manifest.
    """
    try:
        with open(manifest, encoding="utf-8") as fin:
            entries = json.load(fin)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ExplainError(f"{manifest} is not a readable JSON manifest ({err}).") from err
    if not isinstance(entries, dict) or not entries:
        raise ExplainError(f'{manifest} is not a SpeechBrain manifest: expected {{"id": {{"wav": path}}, ...}}.')
    root = os.path.dirname(os.path.abspath(manifest))
    ids, paths = [], []
    for key, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("wav"), str):
            raise ExplainError(f'{manifest}: entry {key!r} has no "wav" path (SpeechBrain manifest format).')
        path = entry["wav"].replace("{data_root}", root)
        ids.append(str(key))
        paths.append(path if os.path.isabs(path) else os.path.join(root, path))
    return [Input(name, path) for name, path in zip(_unique_names(ids), paths)]


def collect_inputs(path):
    """The recordings named by ``path``: a folder (recursively, audio files only) or a JSON manifest.

    Returns
    -------
    tuple
        ``(inputs, skipped)``.

    Raises
    ------
    ExplainError
        A missing path, or a folder or manifest without any audio.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ExplainError(f"{path}: no such file or folder.")
    if os.path.isdir(path):
        inputs, skipped = folder_inputs(path)
    else:
        inputs, skipped = manifest_inputs(path), []
    if skipped:
        shown = ", ".join(os.path.relpath(p, path) for p in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        logger.warning("Skipped %d file(s) that are not audio: %s", len(skipped), shown)
    if not inputs:
        raise ExplainError(f"{path} holds no audio files to explain ({', '.join(sorted(AUDIO_EXTENSIONS)[:6])}, ...).")
    return inputs, skipped


def check_batch_output(out, overwrite=False):
    """Refuse an output folder that is a file, or holds an earlier index/summary (without ``overwrite``)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ExplainError(f"--out {out} is a file: give a folder.")
    check_writable([os.path.join(out, INDEX), os.path.join(out, SUMMARY)], overwrite)


def explain_inputs(explainer, inputs, out, methods, prompts=None, top_k=3, overwrite=False, skipped=()):
    """Explain every input into ``out/<name>/``, then write ``out/index.html`` and ``out/summary.csv``.

    A file that cannot be read or explained is recorded in the outcome (and logged) and the others go on.

    Parameters
    ----------
    explainer : Explainer
        Loaded once; each method of ``methods`` shares its model.
    inputs : list of Input
    out : str
        Output folder.
    methods : list of str
        Interpreters to run on each file.
    prompts : list of str, optional
        As in :meth:`~speechbrain_lmaczs.explain.Explainer.explain_file` (None: the ``top_k`` labels).
    top_k : int
    overwrite : bool
        Replace the files of an earlier run in ``out``.
    skipped : sequence of str
        Non-audio files of the input folder, listed in the index.

    Returns
    -------
    BatchOutcome
    """
    check_batch_output(out, overwrite)
    os.makedirs(out, exist_ok=True)
    explainers = [explainer.with_method(method) for method in methods]
    outcome = BatchOutcome(skipped=list(skipped))
    reports = []
    for item in tqdm(inputs, desc="explaining files", unit="file"):
        folder = os.path.join(out, item.name)
        try:
            wav, rate = read_recording(item.path)
            results = [e.explain_waveform(wav, rate, prompts=prompts, top_k=top_k, path=item.path) for e in explainers]
            write_report(results, folder, overwrite=overwrite)
        except (ExplainError, RuntimeError, ValueError, OSError) as err:
            # One bad file must not stop the others; the reason goes to the index and the exit status.
            reason = str(err) if isinstance(err, ExplainError) else f"{item.path}: {type(err).__name__}: {err}"
            logger.warning("Not explained: %s", reason)
            logger.debug("Traceback of %s", item.path, exc_info=True)
            outcome.failed.append((item.path, reason))
            continue
        reports.append((item, results))
        for result, names in zip(results, output_names(results)):
            for explanation, name in zip(result.explanations, names):
                outcome.rows.append(
                    {
                        "file": item.path,
                        "prompt": explanation.prompt,
                        "probability": f"{explanation.probability:.6f}",
                        "mask_mean": f"{float(explanation.mask.float().mean()):.6f}",
                        "explanation_wav": f"{item.name}/{name}.wav",
                        "method": explanation.method,
                    }
                )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(outcome.rows)
    write_text_atomic(os.path.join(out, SUMMARY), buffer.getvalue())
    outcome.index = os.path.join(out, INDEX)
    write_text_atomic(outcome.index, index_html(reports, outcome))
    return outcome


def index_html(reports, outcome):
    """The page linking every report, with each file's explained prompts, and listing what was not explained.

    Parameters
    ----------
    reports : list of tuple
        ``(Input, results)`` of each explained file.
    outcome : BatchOutcome

    Returns
    -------
    str
    """
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Explanations</title>',
        "<style>body { font-family: sans-serif; max-width: 70em; margin: 1em auto; padding: 0 1em; }"
        " td, th { padding: 0.2em 0.8em; border-bottom: 1px solid #eee; text-align: left; }</style></head><body>",
        f"<h1>Explanations of {len(reports)} file(s)</h1>",
        f'<p>Every row links to its report; <a href="{SUMMARY}">{SUMMARY}</a> has a row per file and prompt.</p>',
        "<table><tr><th>file</th><th>duration</th><th>explained prompts (probability)</th></tr>",
    ]
    for item, results in reports:
        prompts = "; ".join(
            f"{method_title(r.method)}: " + ", ".join(f"{esc(e.prompt)} ({e.probability:.3f})" for e in r.explanations)
            for r in results
        )
        link = quote(f"{item.name}/{REPORT}")
        parts.append(
            f'<tr class="explained"><td><a href="{esc(link)}">{esc(item.path)}</a></td>'
            f"<td>{results[0].duration:.2f} s</td><td>{prompts}</td></tr>"
        )
    parts.append("</table>")
    if outcome.failed:
        parts.append(f"<h2>Not explained ({len(outcome.failed)})</h2><ul>")
        parts += [f'<li class="failed">{esc(path)}: {esc(reason)}</li>' for path, reason in outcome.failed]
        parts.append("</ul>")
    if outcome.skipped:
        parts.append(f"<h2>Skipped, not audio ({len(outcome.skipped)})</h2><ul>")
        parts += [f'<li class="skipped">{esc(path)}</li>' for path in outcome.skipped]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
