"""The ``lmaczs`` command.

    lmaczs explain clip.wav --prompt "dog barking" --prompt "rain" --checkpoint RUN/ --out OUT/

writes one listenable WAV and one figure per prompt and ``OUT/report.html`` (see :mod:`speechbrain_lmaczs.report`).
Given a folder or a JSON manifest instead of a file, it explains every recording into ``OUT/<name>/`` and writes
``OUT/index.html`` and ``OUT/summary.csv`` (see :mod:`speechbrain_lmaczs.batch`).

    lmaczs export RUN/ OUT/ [--include-clap]

writes a trained run as a folder loadable with ``LMACZSExplainer.from_hparams`` (see :mod:`speechbrain_lmaczs.export`).
Errors a user can cause end with one line on stderr and exit status 1; usage errors with argparse's status 2.
"""

import argparse
import logging
import os
import sys
import textwrap

import torch

from speechbrain_lmaczs.explain import LMACZS, ExplainError, methods
from speechbrain_lmaczs.files import NotWritableError, check_writable_folder

logger = logging.getLogger(__name__)

EXAMPLES = """examples:
  lmaczs explain clip.wav --checkpoint results/ESC50/lmaczs_mel/msclap/1234 --out clip_explained/
      explain the 3 most probable classes of the run's label set
  lmaczs explain clip.wav --prompt "dog barking" --prompt "rain" --checkpoint RUN --out OUT
      explain two prompts of your own
  lmaczs explain clip.flac --prompt "a siren" --method lmaczs --method gradcam --checkpoint RUN --out OUT
      compare LMAC-ZS with Grad-CAM on one clip
  lmaczs explain clips/ --prompt "a siren" --checkpoint owner/lmaczs-esc50 --out OUT
      every audio file under clips/ (or the entries of a SpeechBrain JSON manifest), an exported model from the hub
  lmaczs export results/ESC50/lmaczs_mel/msclap/1234 lmaczs-esc50/
      a trained run as a hub-ready model folder (hyperparams.yaml, decoder.ckpt, config.json, README.md)

exit status: 0 when the report is written, 1 for a problem with the input, prompts, checkpoint or output folder
(one line on stderr) or when some files of a folder or manifest could not be explained, 2 for a usage error.
"""


def build_parser():
    """The argument parser of ``lmaczs`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="lmaczs",
        description=textwrap.fill(
            "Listenable Maps for Zero-Shot audio classifiers (LMAC-ZS): explain what in a recording made a CLAP "
            "zero-shot classifier match a text prompt, as a spectrogram mask and as audio.",
            width=100,
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    explain = commands.add_parser(
        "explain",
        help="explain one recording for some prompts (WAVs, figures and an HTML report)",
        description=textwrap.fill(
            "Explain one recording: for each prompt, write a listenable explanation (WAV, exactly as long as the "
            "input), a figure (input spectrogram, mask, masked spectrogram) and OUT/report.html with an audio "
            "player for the original and each explanation. Any sampling rate and channel count is accepted; "
            "recordings longer than the model window are explained window by window and stitched.",
            width=100,
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    explain.add_argument(
        "input",
        metavar="AUDIO",
        help="audio file to explain (WAV, FLAC, OGG, ...), a folder (every audio file under it) or a SpeechBrain "
        'JSON manifest ({"id": {"wav": path}, ...})',
    )
    explain.add_argument(
        "--checkpoint",
        metavar="DIR",
        required=True,
        help="output folder of a train.py run (holds hyperparams.yaml, save/ and the CLAP it used), a folder "
        "written by `lmaczs export`, or the hub id of one",
    )
    explain.add_argument("--out", metavar="DIR", required=True, help="folder for the WAVs, figures and report.html")
    explain.add_argument(
        "--prompt",
        action="append",
        metavar="TEXT",
        help="text to explain (repeat for several; their probabilities are computed among them). Without any, "
        "the --top-k most probable classes of the label set are explained",
    )
    explain.add_argument(
        "--label",
        action="append",
        metavar="NAME",
        help="class name of the label set used without --prompt (repeat for several; the run's prompt template "
        "makes the prompts). Default: the evaluation classes the run recorded",
    )
    explain.add_argument(
        "--top-k", type=int, default=3, metavar="K", help="classes explained without --prompt (default: 3)"
    )
    explain.add_argument(
        "--method",
        action="append",
        choices=methods(),
        metavar="NAME",
        help=f"interpreter (repeat to compare several on the same clip): {', '.join(methods())}. "
        f"Default: {LMACZS}, the trained decoder",
    )
    explain.add_argument(
        "--clap_source",
        "--clap-source",
        metavar="SOURCE",
        help="CLAP to use instead of the one the run recorded (hub id or local checkpoint), e.g. when the run "
        "was moved away from its CLAP",
    )
    explain.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    explain.add_argument("--overwrite", action="store_true", help="replace the files of an earlier report in OUT")
    explain.add_argument("--verbose", action="store_true", help="log what is loaded and computed")
    export = commands.add_parser(
        "export",
        help="write a trained run as a hub-ready model folder (loadable with from_hparams)",
        description=textwrap.fill(
            "Write the best checkpoint of a train.py run as a model folder: inference hyperparams.yaml, "
            "decoder.ckpt, config.json (interface, labels, prompt template, CLAP) and a README.md model card with "
            "the run's validation metrics. Load it with LMACZSExplainer.from_hparams or `lmaczs explain "
            "--checkpoint OUT`, or upload it to the Hugging Face hub.",
            width=100,
        ),
    )
    export.add_argument("run", metavar="RUN", help="output folder of a train.py run")
    export.add_argument("out", metavar="OUT", help="folder to write (must be empty unless --overwrite)")
    export.add_argument(
        "--include-clap", action="store_true", help="copy the CLAP's weights into OUT/clap (default: refer to it)"
    )
    export.add_argument("--license", default="unknown", help="licence of the decoder for the model card")
    export.add_argument("--overwrite", action="store_true", help="replace the files of an earlier export in OUT")
    export.add_argument("--verbose", action="store_true", help="log what is loaded and written")
    return parser


def _check_arguments(args):
    """Problems with the arguments themselves, found before anything is loaded."""
    for prompt in args.prompt or []:
        if not prompt.strip():
            raise ExplainError("--prompt is empty: give a text, e.g. --prompt 'dog barking'.")
    for label in args.label or []:
        if not label.strip():
            raise ExplainError("--label is empty: give a class name, e.g. --label dog.")
    if args.top_k < 1:
        raise ExplainError(f"--top-k must be at least 1, got {args.top_k}.")
    if args.prompt and args.label:
        raise ExplainError("--label is used only without --prompt: give one or the other.")
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        raise ExplainError(f"--device {args.device!r} is not a torch device ({err}).") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ExplainError(f"--device {args.device}: no CUDA GPU is available here; use --device cpu.")


def explain_command(args):
    """Run ``lmaczs explain``; returns the path of the report (or of the index) and the files that failed."""
    from speechbrain_lmaczs.batch import is_batch
    from speechbrain_lmaczs.explain import read_recording
    from speechbrain_lmaczs.inference import load_explainer
    from speechbrain_lmaczs.report import ORIGINAL, REPORT, check_writable, write_report

    _check_arguments(args)
    if is_batch(args.input):
        return _explain_many(args)
    # Cheap checks first, so that a typo does not wait for the model to load.
    wav, rate = read_recording(args.input)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ExplainError(f"--out {args.out} is a file: give a folder.")
    check_writable_folder(args.out, "--out")
    check_writable([os.path.join(args.out, ORIGINAL), os.path.join(args.out, REPORT)], args.overwrite, [args.input])
    explainer = load_explainer(args.checkpoint, device=args.device, labels=args.label, clap_source=args.clap_source)
    results = []
    for method in dict.fromkeys(args.method or [LMACZS]):
        results.append(
            explainer.with_method(method).explain_waveform(
                wav, rate, prompts=args.prompt, top_k=args.top_k, path=args.input
            )
        )
    try:
        return write_report(results, args.out, overwrite=args.overwrite), []
    except OSError as err:  # the folder was writable when checked: a full disk, a file removed meanwhile ...
        raise ExplainError(f"Could not write the report in {args.out}: {err.strerror or err}.") from err


def _explain_many(args):
    """``lmaczs explain`` on a folder or a manifest (see :mod:`speechbrain_lmaczs.batch`)."""
    from speechbrain_lmaczs.batch import check_batch_output, collect_inputs, explain_inputs
    from speechbrain_lmaczs.inference import load_explainer

    inputs, skipped = collect_inputs(args.input)
    check_batch_output(args.out, args.overwrite)
    explainer = load_explainer(args.checkpoint, device=args.device, labels=args.label, clap_source=args.clap_source)
    outcome = explain_inputs(
        explainer, inputs, args.out, list(dict.fromkeys(args.method or [LMACZS])), args.prompt, args.top_k,
        args.overwrite, skipped,
    )
    return outcome.index, outcome.failed


def export_command(args):
    """Run ``lmaczs export``; returns the exported folder's model card."""
    from speechbrain_lmaczs.export import export_run

    out = export_run(args.run, args.out, include_clap=args.include_clap, license=args.license, overwrite=args.overwrite)
    return os.path.join(out, "README.md"), []


def main(argv=None):
    """Entry point of the ``lmaczs`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    # SpeechBrain sets its own loggers to INFO; the handler's level is what keeps them quiet without --verbose.
    handler = logging.StreamHandler()
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    try:
        report, failed = (export_command if args.command == "export" else explain_command)(args)
    except (ExplainError, NotWritableError) as err:
        print(f"lmaczs: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lmaczs: interrupted", file=sys.stderr)
        return 130
    print(f"Wrote {report}")
    if failed:
        # Each one was logged as it failed; the index lists them with their reasons.
        print(f"lmaczs: error: {len(failed)} file(s) could not be explained (listed above and in {report}): "
              f"{', '.join(path for path, _ in failed[:5])}{', ...' if len(failed) > 5 else ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
