"""Explanation speed of every interpreter, as a ratio to one classification forward of the same batch.

Each method explains the zero-shot classifier the evaluation recipe explains (Mel masking, the predicted class,
the checkpoint's temperature) with the recipe's settings (``recipes/ESC50/interpret/hparams/eval.yaml``:
SmoothGrad 50 noisy copies, IG 50 steps, ScoreCAM on every channel of the CAM layer, GScoreCAM on 10 % of them),
on full-size CNN14 (MS-CLAP 2022) and HTSAT (LAION) encoders with random weights.

Timing: one classification forward of the batch (``classifier(x)`` under ``no_grad``, as the evaluation computes
the logits) is timed before the first method and after every timed call of a method; each call's time is divided
by the mean of the two forwards around it, and ``ratio_to_forward`` is the median of these ratios over the rounds
(``seconds`` the median time). ``cpu_ratio_to_forward`` is the same with the process's CPU time instead of the wall
clock: on a shared CPU the wall-clock time moves with how many cores other processes leave free, the CPU time of
the same work much less (NaN on CUDA).

The expensive baselines are measured on a part of their work and scaled up linearly, marked in the ``note``
column (``--full-cost`` measures everything: hours on a CPU):

- IG: ``n_steps`` reduced so that about ``--path-points`` path points are computed (cost is linear in steps);
- SmoothGrad: one clip with ``--path-points`` noisy copies (the method loops over clips, so cost is linear in
  both);
- ScoreCAM / GScoreCAM: the activation pass (and gradient, for GScoreCAM) is timed in full, the masked forwards
  on ``--scorecam-channels`` channels of ``--scorecam-clips`` clips (the method loops over clips and channel
  chunks).

``lmaczs_decoder`` is not a method of the recipe: it times the decoder alone on the hidden maps of the
classification forward, i.e. the cost of an LMAC-ZS explanation if the evaluation reused its forward pass.

Usage::

    python benchmarks/explain_speed.py --out results/benchmarks/explain_speed.csv      # CPU table (minutes)
    python benchmarks/explain_speed.py --backends msclap --batches 16 --methods forward lmaczs ig
    python benchmarks/explain_speed.py --quick --out /tmp/explain_quick.csv             # smoke run (seconds)
    python benchmarks/explain_speed.py --device cuda --precision fp32 bf16 --out explain_cuda.csv
"""

import argparse
import logging
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (the benchmarks folder is not a package)

from speechbrain_lmaczs.classifier import ZeroShotClassifier, make_prompts  # noqa: E402
from speechbrain_lmaczs.interpreters import LMACZSInterpreter, build_interpreter, resolve_targets  # noqa: E402
from speechbrain_lmaczs.lmaczs.domains import MelMasking  # noqa: E402

logger = logging.getLogger("explain_speed")

#: the evaluation recipe's methods, the reference forward first, and the decoder-only variant of LMAC-ZS last
METHODS = ("forward", "gradcam", "gradcam++", "smoothgrad", "ig", "scorecam", "gscorecam", "lmaczs", "lmaczs_decoder")
COLUMNS = ("method", "backend", "batch", "clips_per_s", "ratio_to_forward", "cpu_ratio_to_forward", "seconds",
           "cpu_seconds", "forward_seconds", "repeats", "note", "device", "precision", "size", "load_1min")
TABLE_COLUMNS = ("method", "backend", "precision", "batch", "clips_per_s", "ratio_to_forward", "cpu_ratio_to_forward",
                 "note")
#: methods cheap enough to time several rounds; the others run once, with reduced work scaled up (see ``note``)
CHEAP = ("gradcam", "gradcam++", "lmaczs", "lmaczs_decoder")

#: the interpreter settings of recipes/ESC50/interpret/hparams/eval.yaml (tests/test_benchmarks.py checks them)
EVAL_YAML = {"smoothgrad_samples": 50, "noise_level": 0.15, "ig_steps": 50, "gradient_batch_size": 50,
             "scorecam_batch_size": 64, "gscorecam_top_fraction": 0.1, "upsample_mode": "nearest",
             "ig_baseline": "absent"}  # IG's default baseline: what a zero mask leaves


class Bench:
    """One backend and batch: the classifier, its inputs, the targets, and how each method is timed."""

    def __init__(self, classifier, decoder, x, args, device, precision):
        self.precision_name = precision
        self.classifier = classifier
        self.decoder = decoder
        self.x = x
        self.args = args
        self.device = device
        self.batch = x.shape[0]
        with torch.no_grad(), self.precision():
            # The evaluation explains the zero-shot decision, computed from its own forward.
            self.targets = classifier(x).argmax(dim=-1)

    def precision(self):
        return common.precision_context(self.device, self.precision_name)

    def forward(self):
        with torch.no_grad(), self.precision():
            self.classifier(self.x)

    def time(self, fn, warmup=0):
        """:class:`common.Cost` of one call of ``fn`` (in the benchmark's precision) after ``warmup`` untimed calls."""

        def call():
            with self.precision():
                fn()

        for _ in range(warmup):
            call()
        return common.time_call(call, self.device)

    # -- one function per method: (Cost of one explanation of the batch with the recipe's settings, note)
    def measure(self, method, warmup):
        if method in ("gradcam", "gradcam++"):
            interpreter = build_interpreter(method, self.classifier, upsample_mode=EVAL_YAML["upsample_mode"])
            return self.time(lambda: interpreter.explain(self.x, self.targets), warmup), "measured"
        if method == "lmaczs":
            interpreter = LMACZSInterpreter(self.classifier, self.decoder)
            return self.time(lambda: interpreter.explain(self.x, self.targets), warmup), "measured"
        if method == "lmaczs_decoder":
            return self.decoder_only(warmup)
        if method == "ig":
            return self.integrated_gradients(warmup)
        if method == "smoothgrad":
            return self.smoothgrad(warmup)
        if method in ("scorecam", "gscorecam"):
            return self.scorecam(method, warmup)
        raise ValueError(f"Unknown method {method!r}")

    def decoder_only(self, warmup):
        interpreter = LMACZSInterpreter(self.classifier, self.decoder)
        with torch.no_grad(), self.precision():
            _, hidden = self.classifier.embed(self.x, return_hidden=True)
        text = self.classifier.text_embeddings[self.targets]
        cost = self.time(lambda: interpreter.masks(hidden, text, self.x), warmup)
        return cost, "decoder only, on the hidden maps of the classification forward (proposed reuse)"

    def integrated_gradients(self, warmup):
        full = EVAL_YAML["ig_steps"]
        steps = full if self.args.full_cost else min(full, max(1, round(self.args.path_points / self.batch)))
        interpreter = build_interpreter("ig", self.classifier, n_steps=steps,
                                        batch_size=EVAL_YAML["gradient_batch_size"])
        cost = self.time(lambda: interpreter.explain(self.x, self.targets), warmup)
        if steps == full:
            return cost, "measured"
        return cost.scaled(full / steps), f"extrapolated from n_steps={steps} (x{full / steps:.3g}, linear in steps)"

    def smoothgrad(self, warmup):
        full = EVAL_YAML["smoothgrad_samples"]
        if self.args.full_cost:
            samples, clips = full, self.batch
        else:
            samples, clips = min(full, self.args.path_points), 1
        interpreter = build_interpreter("smoothgrad", self.classifier, n_samples=samples,
                                        noise_level=EVAL_YAML["noise_level"],
                                        batch_size=EVAL_YAML["gradient_batch_size"])
        x, targets = self.x[:clips], self.targets[:clips]
        cost = self.time(lambda: interpreter.explain(x, targets), warmup)
        scale = (full / samples) * (self.batch / clips)
        if scale == 1:
            return cost, "measured"
        return cost.scaled(scale), (f"extrapolated from {clips} clip(s) x {samples} noisy copies "
                                    f"(x{scale:.3g}; the method loops over clips)")

    def scorecam(self, method, warmup):
        options = {"upsample_mode": EVAL_YAML["upsample_mode"], "batch_size": EVAL_YAML["scorecam_batch_size"]}
        if method == "gscorecam":
            options["top_fraction"] = EVAL_YAML["gscorecam_top_fraction"]
        interpreter = build_interpreter(method, self.classifier, **options)
        targets = resolve_targets(self.classifier, self.x, self.targets)
        result = {}

        def activations():
            with torch.enable_grad():
                result["maps"] = interpreter.activations(self.x, targets, with_gradients=interpreter.needs_gradients)

        fixed = self.time(activations, warmup)
        acts, grads = result["maps"]
        n_clips = self.batch if self.args.full_cost else min(self.batch, self.args.scorecam_clips)
        total = fixed
        for i in range(n_clips):
            channels = interpreter.select_channels(acts[i], None if grads is None else grads[i])
            n_full = len(channels)
            n_measured = n_full if self.args.full_cost else min(n_full, self.args.scorecam_channels)
            maps = acts[i, channels[:n_measured]]
            cost = self.time(lambda: interpreter.masked_scores(self.x[i], maps, targets, i), warmup if i == 0 else 0)
            # Every clip has the same number of channels and masked forwards: the measured clips stand for all.
            total = total + cost.scaled(n_full / n_measured * self.batch / n_clips)
        if n_clips == self.batch and n_measured == n_full:
            return total, "measured (activation pass + masked forwards, timed separately)"
        return total, (f"extrapolated: masked forwards of {n_measured}/{n_full} channels on {n_clips}/{self.batch}"
                          f" clip(s) (x{n_full / n_measured * self.batch / n_clips:.3g}); activation pass measured")


def run_backend(backend, args, device):
    """Rows of every (method, batch) for one backend."""
    clap = common.build_clap(backend, args.size, device, seed=args.seed)
    decoder = common.build_decoder(clap, device, width=args.decoder_width, seed=args.seed)
    domain = MelMasking(clap.frontend).to(device)
    classifier = ZeroShotClassifier(clap, make_prompts(common.LABELS), to_logmel=domain.to_logmel).to(device)
    rows = []
    for run_index, (precision, batch) in enumerate((p, b) for p in args.precision for b in args.batches):
        with torch.no_grad():
            x = domain.representation(common.random_clips(clap, batch, device, seed=args.seed + batch))
        bench = Bench(classifier, decoder, x, args, device, precision)
        # The first batch of a precision pays for lazy imports (pytorch-grad-cam), allocator growth and kernel
        # selection: warm each method up there; later batches reuse all of that.
        warmup = 1 if run_index % len(args.batches) == 0 else 0
        forwards = [bench.time(bench.forward, warmup + 1)]
        batch_rows = []
        for method in args.methods:
            if method == "forward":
                continue
            logger.info("%s | batch %d | %s (load %s)", backend, batch, method, common.load_average())
            # Rounds of (method, forward): each timing is compared with the forwards right before and after it,
            # which cancels most of the drift of a shared machine's load.
            rounds = (args.repeats or (3 if batch < 8 else 2)) if method in CHEAP else 1
            costs, references = [], []
            for round_index in range(rounds):
                try:
                    cost, note = bench.measure(method, warmup if round_index == 0 else 0)
                except Exception as err:  # one failing method (e.g. out of memory) must not lose the other rows
                    logger.exception("%s failed", method)
                    cost, note = common.Cost(math.nan, math.nan), f"failed: {type(err).__name__}: {str(err)[:100]}"
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                forwards.append(bench.time(bench.forward))
                costs.append(cost)
                references.append(forwards[-2] + forwards[-1])
            batch_rows.append(_row(method, backend, batch, costs, references, note, args, device, precision))
        if "forward" in args.methods:
            note = f"median of {len(forwards)} forwards taken between the methods"
            batch_rows.insert(0, _row("forward", backend, batch, forwards, None, note, args, device, precision))
        rows += batch_rows
        if args.profile:
            _profile(bench, backend, args)
    return rows


def _row(method, backend, batch, costs, references, note, args, device, precision):
    """A CSV row from a method's costs per round and the sums of the two forwards around each round.

    ``references`` None marks the forward itself (ratio 1).
    """
    wall = statistics.median(c.wall for c in costs)
    cpu = statistics.median(c.cpu for c in costs)
    if references is None:
        ratio = cpu_ratio = 1.0
        forward_wall = wall
    else:
        # mean of the two forwards = sum / 2
        ratios = [c.ratio_to_forwards(r) for c, r in zip(costs, references)]
        ratio = statistics.median(w for w, _ in ratios)
        cpu_ratio = statistics.median(c for _, c in ratios)
        forward_wall = statistics.median(r.wall / 2 for r in references)
    return {
        "method": method,
        "backend": backend,
        "batch": batch,
        "clips_per_s": batch / wall if wall > 0 else math.nan,
        "ratio_to_forward": ratio,
        "cpu_ratio_to_forward": cpu_ratio,
        "seconds": wall,
        "cpu_seconds": cpu,
        "forward_seconds": forward_wall,
        "repeats": len(costs),
        "note": note,
        "device": device.type,
        "precision": precision,
        "size": args.size,
        "load_1min": common.load_1min(),
    }


def _profile(bench, backend, args):
    interpreter = LMACZSInterpreter(bench.classifier, bench.decoder)

    def lmaczs():
        with bench.precision():
            interpreter.explain(bench.x, bench.targets)

    path = os.path.splitext(args.out)[0] + "_profile.md"
    with open(path, "a", encoding="utf-8") as fout:
        for title, fn in ((f"{backend} forward, batch {bench.batch}, {bench.precision_name}", bench.forward),
                          (f"{backend} lmaczs explain, batch {bench.batch}, {bench.precision_name}", lmaczs)):
            fout.write(common.profile_call(fn, bench.device, title) + "\n")
    logger.info("Profiles appended to %s", path)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(parser, default_out="results/benchmarks/explain_speed.csv", several_precisions=True)
    parser.add_argument("--backends", nargs="+", default=["msclap", "laion"], choices=["msclap", "laion"])
    parser.add_argument("--batches", nargs="+", type=int, default=None, help="batch sizes (default: 1 16).")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed rounds of the cheap methods, each between two forwards (median); expensive ones "
                             "run once (default: 3 below batch 8, else 2).")
    parser.add_argument("--path-points", type=int, default=None,
                        help="IG path points / SmoothGrad noisy copies actually computed (default: 8 on CPU, all "
                             "on CUDA).")
    parser.add_argument("--scorecam-channels", type=int, default=None,
                        help="channels whose masked forwards are timed per clip (default: 16 on CPU, 64 on CUDA).")
    parser.add_argument("--scorecam-clips", type=int, default=None,
                        help="clips whose masked forwards are timed (default: 1 on CPU, all on CUDA).")
    parser.add_argument("--full-cost", action="store_true",
                        help="no extrapolation: every method with the recipe's full settings (hours on a CPU).")
    parser.add_argument("--profile", action="store_true",
                        help="also write torch.profiler tables of the forward and of LMAC-ZS to <out>_profile.md.")
    args = parser.parse_args(argv)
    common.require_at_least_one(parser, args, "repeats")
    cuda = args.device.startswith("cuda")
    common.resolve_quick(args, batches=([1, 2], [1, 16]), repeats=(1, None))
    if args.path_points is None:
        args.path_points = 10**9 if cuda else 8
    if args.scorecam_channels is None:
        args.scorecam_channels = 64 if cuda else 16
    if args.scorecam_clips is None:
        args.scorecam_clips = 10**9 if cuda else 1
    common.require_at_least_one(parser, args, "path_points", "scorecam_channels", "scorecam_clips")
    return args


def main(argv=None):
    args = parse_args(argv)
    device = common.configure(args.threads, args.device)
    start = time.perf_counter()
    rows = []
    for backend in args.backends:
        rows += run_backend(backend, args, device)
        common.write_csv(args.out, rows, COLUMNS)  # after each backend, so a long run keeps what it measured
    print(f"\nExplanation speed, {args.size} models, {' and '.join(args.precision)}, {common.machine(device)}")
    print(f"Load average (1/5/15 min) at the end: {common.load_average()}; run took "
          f"{time.perf_counter() - start:.0f} s\n")
    print(common.markdown_table(rows, TABLE_COLUMNS))
    if args.size == "full":
        print(_targets(rows))
    return rows


def _targets(rows):
    """The issue's two explanation targets, read off the CNN14 rows of the largest batch, per precision."""
    lines = []
    for precision in dict.fromkeys(r["precision"] for r in rows):
        msclap = [r for r in rows if r["backend"] == "msclap" and r["precision"] == precision]
        if not msclap:
            continue
        batch = max(r["batch"] for r in msclap)
        by_method = {r["method"]: r for r in msclap if r["batch"] == batch}
        lmaczs, ig = by_method.get("lmaczs"), by_method.get("ig")
        lines += ["", f"Targets (MS-CLAP CNN14, batch {batch}, {precision}):"]
        for clock, key in (("wall clock", "ratio_to_forward"), ("CPU time", "cpu_ratio_to_forward")):
            if lmaczs is None or math.isnan(lmaczs[key]):
                continue
            ratio = lmaczs[key]
            lines.append(f"- {clock}: LMAC-ZS explanation = {ratio:.2f} x forward (target <= 1.5): "
                         + ("met" if ratio <= 1.5 else "NOT met"))
            if ig is not None and not math.isnan(ig[key]):
                speedup = ig[key] / ratio
                lines.append(f"- {clock}: IG-50 / LMAC-ZS = {speedup:.1f} (target >= 20): "
                             + ("met" if speedup >= 20 else "NOT met"))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
