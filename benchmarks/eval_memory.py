"""Peak memory of the head-to-head evaluation over N and 10 N clips: it must not grow with the number of clips.

The evaluation (:func:`speechbrain_lmaczs.evaluation.evaluate`) streams: per-clip metrics go to ``per_clip.csv`` as
they come, the means are running sums (``MetricAccumulator``), and no mask outlives its batch. This script checks
that claim on the real code: each run evaluates N (then 10 N) clips in a fresh Python process and reports, for the
``evaluate`` call alone (peak during the call, and ``added`` = peak minus the value just before it):

- ``*_heap_mb`` (CPU): memory allocated and not yet freed (glibc ``mallinfo2``, sampled every 2 ms), where CPU
  tensors live. Memory the allocator keeps after a free does not count, so this is the figure the verdict uses;
- ``*_rss_mb``: the process's resident memory (high-water mark reset just before the call), which also holds
  freed-but-kept memory and therefore moves by tens of MB with the allocator's history;
- ``*_cuda_mb`` (GPU): ``torch.cuda.max_memory_allocated``, exact, used for the verdict on a GPU;
- ``python_heap_peak_mb``: the peak of Python-object memory (tracemalloc), which sees a list of per-clip rows
  grow. The manifest and the dataset hold a few hundred bytes per clip by design, so this grows slightly with N.

Verdict: storing every mask would add 9 N masks between the two runs (a (time, freq) float32 mask is
690 x 64 x 4 B = 173 KB for MS-CLAP). FLAT means the added memory grew by less than a tenth of that, or less than
1 % of the smaller run's figure (the sampled peak's jitter), whichever is larger. The allocator's retention makes
the RSS move by tens of MB either way (it is reported, not judged).

Usage::

    python benchmarks/eval_memory.py --out results/benchmarks/eval_memory.csv        # full-size CNN14, 4 and 40 clips
    python benchmarks/eval_memory.py --size tiny --clips 16 --methods gradcam lmaczs  # 16 and 160 clips
    python benchmarks/eval_memory.py --quick --out /tmp/eval_memory_quick.csv          # smoke run
"""

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (the benchmarks folder is not a package)

logger = logging.getLogger("eval_memory")

COLUMNS = ("backend", "size", "methods", "clips", "batch", "eval_added_heap_mb", "eval_peak_heap_mb",
           "eval_added_rss_mb", "eval_peak_rss_mb", "eval_added_cuda_mb", "eval_peak_cuda_mb", "python_heap_peak_mb",
           "process_maxrss_mb", "seconds", "device", "precision", "load_1min")
TABLE_COLUMNS = ("backend", "size", "methods", "clips", "batch", "eval_added_heap_mb", "eval_added_rss_mb",
                 "eval_added_cuda_mb", "eval_peak_rss_mb", "python_heap_peak_mb", "seconds")
#: cheap settings for the baselines that have a cost knob (memory, not speed, is measured here)
CHEAP_OPTIONS = {"smoothgrad": {"n_samples": 4}, "ig": {"n_steps": 4}, "gscorecam": {"top_fraction": 0.01}}
#: audio files the manifest cycles through (the clip count, not the audio, is what matters)
N_FILES = 4


def write_audio(folder, sample_rate, seconds=5.0, seed=0):
    """A few short WAV files (noise and tones) to build manifests of any length from."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    paths = []
    for i in range(N_FILES):
        wav = 0.05 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * (300 + 700 * i) * t)
        path = os.path.join(folder, f"clip{i}.wav")
        sf.write(path, wav.astype(np.float32), sample_rate)
        paths.append(path)
    return paths


def manifest_of(paths, n_clips):
    """A labelled manifest of ``n_clips`` entries cycling through ``paths`` and the benchmark's labels."""
    return {
        f"item{i:06d}": {"wav": paths[i % len(paths)], "class_string": common.LABELS[i % len(common.LABELS)],
                         "classID": i % len(common.LABELS)}
        for i in range(n_clips)
    }


def worker(args):
    """Run one evaluation in this process; print its memory figures as one JSON line."""
    from speechbrain_lmaczs.evaluation import EvalSettings, evaluate
    from speechbrain_lmaczs.lmaczs.domains import MelMasking
    from speechbrain_lmaczs.lmaczs.pretrained import TrainedLMACZS

    device = common.configure(args.threads, args.device)
    clap = common.build_clap(args.backend, args.size, device, seed=args.seed)
    decoder = common.build_decoder(clap, device, width=args.decoder_width, seed=args.seed)
    model = TrainedLMACZS(clap, decoder, MelMasking(clap.frontend).to(device)).to(device).eval()
    settings = EvalSettings(
        methods=tuple(args.methods),
        conditions=("clean",),
        batch_size=args.batch,
        interpreter_options={m: CHEAP_OPTIONS[m] for m in args.methods if m in CHEAP_OPTIONS},
    )
    with tempfile.TemporaryDirectory() as folder:
        paths = write_audio(folder, clap.sample_rate, seconds=clap.frontend.clip_seconds, seed=args.seed)
        manifest = manifest_of(paths, args.clips)
        with common.PeakMemory(device) as memory, common.precision_context(device, args.precision):
            tracemalloc.start()
            start = time.perf_counter()
            evaluate(model, manifest, os.path.join(folder, "eval"), settings, device=str(device))
            seconds = time.perf_counter() - start
            _, heap_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    on_cuda = device.type == "cuda"
    result = {"eval_peak_heap_mb": memory.heap_peak_mb, "eval_added_heap_mb": memory.heap_delta_mb,
              "eval_peak_rss_mb": memory.rss_peak_mb, "eval_added_rss_mb": memory.rss_delta_mb,
              "eval_peak_cuda_mb": memory.cuda_peak_mb if on_cuda else math.nan,
              "eval_added_cuda_mb": memory.cuda_delta_mb if on_cuda else math.nan,
              "python_heap_peak_mb": heap_peak / 2**20, "seconds": seconds}
    print("RESULT " + json.dumps(result), flush=True)


def run_child(args, n_clips):
    """Start a fresh process for ``n_clips`` and collect its JSON line and its own max RSS (``wait4``)."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--clips", str(n_clips), "--batch",
               str(args.batch), "--backend", args.backend, "--size", args.size, "--device", args.device,
               "--precision", args.precision, "--threads", str(args.threads), "--seed", str(args.seed),
               "--decoder-width", str(args.decoder_width),
               "--methods", *args.methods]
    logger.info("Evaluating %d clips in a fresh process (load %s)", n_clips, common.load_average())
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"The evaluation of {n_clips} clips failed (exit code {child.returncode}); see above.")
    line = [x for x in output.splitlines() if x.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    # ru_maxrss of one child, in KiB on Linux
    result["process_maxrss_mb"] = usage.ru_maxrss / 1024
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(parser, default_out="results/benchmarks/eval_memory.csv")
    parser.add_argument("--backend", default="msclap", choices=["msclap", "laion"])
    parser.add_argument("--clips", type=int, default=4,
                        help="N: the runs use N and 10 N clips; a multiple of --batch, at least two batches "
                             "(default 4).")
    parser.add_argument("--batch", type=int, default=2, help="clips per batch (default 2).")
    parser.add_argument("--methods", nargs="+", default=["gradcam", "lmaczs"],
                        help="methods evaluated (default: gradcam lmaczs); costly ones run with cheap settings.")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    common.resolve_quick(args)
    if args.clips < 1 or args.batch < 1:
        parser.error("--clips and --batch must be >= 1")
    if args.clips % args.batch or args.clips < 2 * args.batch:
        # A partial batch holds fewer activations at its peak, and from the second batch on the previous batch's
        # tensors are still referenced while the next one is computed: with fewer than two full batches the two
        # runs would not be comparable.
        parser.error(f"--clips ({args.clips}) must be a multiple of --batch ({args.batch}), at least twice it.")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    common.configure(args.threads, "cpu")
    rows = []
    for n_clips in (args.clips, 10 * args.clips):
        result = run_child(args, n_clips)
        rows.append({"backend": args.backend, "size": args.size, "methods": " ".join(args.methods),
                     "clips": n_clips, "batch": args.batch, "device": args.device, "precision": args.precision,
                     "load_1min": common.load_1min(), **result})
        common.write_csv(args.out, rows, COLUMNS)
    print(f"\nEvaluation memory, {args.size} {args.backend}, methods {args.methods}, batch {args.batch}, "
          f"{args.device}; load average {common.load_average()}\n")
    print(common.markdown_table(rows, TABLE_COLUMNS))
    print("\n" + verdict(rows, args.backend))
    return rows


def verdict(rows, backend):
    """One line: did the memory added by the evaluation grow between N and 10 N clips?"""
    small, large = rows
    key = "eval_added_cuda_mb" if small["device"].startswith("cuda") else "eval_added_heap_mb"
    if math.isnan(small[key]):  # no mallinfo2 (not glibc): the RSS is all there is
        key = "eval_added_rss_mb"
    grown_mb = large[key] - small[key]
    extra_clips = large["clips"] - small["clips"]
    stored_mb = extra_clips * _mask_kb(backend) / 1024
    heap_kb = (large["python_heap_peak_mb"] - small["python_heap_peak_mb"]) * 1024 / extra_clips
    # A tenth of the stored masks, but never below 1 % of the smaller run's peak: the peak is sampled, and a run
    # of more batches has more chances to catch a slightly higher one.
    allowed_mb = max(0.1 * stored_mb, 0.01 * small[key])
    flat = grown_mb < allowed_mb
    return (f"{key} grew by {grown_mb:+.2f} MB from {small['clips']} to {large['clips']} clips (allowed "
            f"{allowed_mb:.2f} MB; storing their masks would add {stored_mb:.1f} MB); Python objects "
            f"{heap_kb:+.2f} KB/clip -> " + ("FLAT" if flat else "GROWS"))


def _mask_kb(backend):
    """KB of one float32 mask on the log-mel grid of the released front-end of ``backend``."""
    from speechbrain_lmaczs.clap.frontend import LogMelFrontend
    from speechbrain_lmaczs.clap.laion import LAION_FRONTEND
    from speechbrain_lmaczs.clap.msclap import default_frontend

    frontend = default_frontend() if backend == "msclap" else LogMelFrontend(**LAION_FRONTEND)
    return frontend.n_frames * frontend.n_mels * 4 / 1024


if __name__ == "__main__":
    main()
