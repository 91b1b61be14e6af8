"""LMAC-ZS training-step throughput and peak memory, as a ratio to one classification forward of the same batch.

A step is ``LMACZSBrain.fit_batch`` (the recipe's Brain: unmasked encoder pass, caption embeddings, decoder on
every (text, audio) pair, one masked encoder forward per pair, zero-shot loss, backward to the decoder, Adam step)
with the recipe's decoder (``lmaczs_mel.yaml``) over a full-size frozen CLAP with random weights.

For each batch size B and ``pairs_per_clip`` (``full``: the paper's B x B grid; k: k pairs per clip), the CSV row
gives:

- clips/s, and the step time over one classification forward of the same batch (``classifier(x)`` under
  ``no_grad``, timed right before and after each step; ``cpu_ratio_to_forward`` in process CPU time);
- the memory of the steps: ``peak_mem_mb`` in use at the peak and ``step_mem_mb`` added by the steps at their peak
  (CPU: bytes allocated and not freed, sampled, see ``common.PeakMemory``, with the RSS growth in ``step_rss_mb``;
  CUDA: ``torch.cuda.max_memory_allocated``);
- the step's lower bound, one encoder forward of the B clips plus one encoder forward-backward (to the input) per
  masked pair, both timed here: ``fraction_of_bound`` = bound / step says how much of a step is encoder work. On
  an H100 (fp32, CNN14, batch 64, k=1) that bound is about 1,250 clips/s (clap-backends.md cost anchors).

A full grid with more than ``--max-pairs`` pairs is not run (B = 32 would take 1024 masked passes and far more
memory than a CPU has): its row is extrapolated linearly in the number of pairs from the k=1 and k=2 rows of the
same batch, and says so in ``note``.

Usage::

    python benchmarks/train_speed.py --out results/benchmarks/train_speed.csv          # CPU table (minutes)
    python benchmarks/train_speed.py --batches 8 --pairs 1 --breakdown                 # where a step's time goes
    python benchmarks/train_speed.py --quick --out /tmp/train_quick.csv                # smoke run (seconds)
    python benchmarks/train_speed.py --device cuda --precision fp32 bf16 --batches 2 8 32 64
"""

import argparse
import logging
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (the benchmarks folder is not a package)

from speechbrain.dataio.batch import PaddedBatch  # noqa: E402

from speechbrain_lmaczs.clap.base import l2_normalize  # noqa: E402
from speechbrain_lmaczs.classifier import ZeroShotClassifier, make_prompts  # noqa: E402
from speechbrain_lmaczs.lmaczs.brain import LMACZSBrain  # noqa: E402
from speechbrain_lmaczs.lmaczs.domains import MelMasking  # noqa: E402
from speechbrain_lmaczs.lmaczs.loss import grid_pairs, zero_shot_loss  # noqa: E402

logger = logging.getLogger("train_speed")

COLUMNS = ("backend", "batch", "pairs_per_clip", "pairs", "clips_per_s", "step_seconds", "ratio_to_forward",
           "cpu_ratio_to_forward", "forward_seconds", "fwdbwd_seconds", "bound_clips_per_s", "fraction_of_bound",
           "cpu_fraction_of_bound", "peak_mem_mb", "step_mem_mb", "step_rss_mb", "repeats", "note", "device",
           "precision", "size", "load_1min")
TABLE_COLUMNS = ("backend", "precision", "batch", "pairs_per_clip", "pairs", "clips_per_s", "ratio_to_forward",
                 "cpu_ratio_to_forward", "fraction_of_bound", "cpu_fraction_of_bound", "step_mem_mb", "note")

#: the recipe's loss weights and optimiser (lmaczs_mel.yaml)
LAMBDA_REG, LAMBDA_DIV, LR = 0.25, 1.0, 1e-5


class Setup:
    """A backend with its decoder, masking domain and reference classifier."""

    def __init__(self, backend, args, device):
        self.args = args
        self.device = device
        self.backend = backend
        #: the precision being measured; main() sets each of --precision in turn on the same models
        self.precision_name = args.precision[0]
        self.clap = common.build_clap(backend, args.size, device, seed=args.seed)
        self.decoder = common.build_decoder(self.clap, device, width=args.decoder_width, seed=args.seed)
        self.domain = MelMasking(self.clap.frontend).to(device)
        self.classifier = ZeroShotClassifier(self.clap, make_prompts(common.LABELS),
                                             to_logmel=self.domain.to_logmel).to(device)

    def precision(self):
        return common.precision_context(self.device, self.precision_name)

    def batch(self, size):
        """A PaddedBatch as the recipe's dataloader gives it (``wav`` on the CPU, ``caption`` strings)."""
        wav = common.random_clips(self.clap, size, torch.device("cpu"), seed=self.args.seed + size)
        items = [{"id": f"clip{i}", "wav": wav[i], "caption": common.CAPTIONS[i % len(common.CAPTIONS)]}
                 for i in range(size)]
        return PaddedBatch(items)

    def representation(self, batch):
        with torch.no_grad():
            return self.domain.representation(batch.wav.data.to(self.device))

    def brain(self, pairs_per_clip):
        hparams = {"lambda_reg": LAMBDA_REG, "lambda_div": LAMBDA_DIV, "use_logit_scale": True,
                   "pairs_per_clip": pairs_per_clip, "train_logger": None}
        brain = LMACZSBrain(
            modules={"clap": self.clap, "decoder": self.decoder, "domain": self.domain},
            opt_class=lambda params: torch.optim.Adam(params, lr=LR),
            hparams=hparams,
            run_opts={"device": str(self.device), "precision": self.precision_name},
        )
        brain.on_fit_start()
        brain.modules.train()  # as Brain.fit does at each epoch (the frozen CLAP stays in eval mode)
        return brain

    def forward(self, x):
        """:class:`common.Cost` of one classification forward of ``x`` (the reference)."""

        def forward():
            with torch.no_grad(), self.precision():
                self.classifier(x)

        return common.time_call(forward, self.device)

    def fwdbwd_cost(self, batch_size, repeats):
        """Cost of one encoder forward + backward to the input (frozen weights) of ``batch_size`` clips: the work
        of one masked pass per clip. The lower middle of ``max(2, repeats)`` timings, after a warm-up on CUDA."""
        x = self.representation(self.batch(batch_size))

        def fwdbwd():
            inputs = x.detach().requires_grad_(True)
            with self.precision():
                embedding = self.classifier.embed(inputs)
            embedding.float().sum().backward()

        if self.device.type == "cuda":
            fwdbwd()
        costs = sorted((common.time_call(fwdbwd, self.device) for _ in range(max(2, repeats))), key=lambda c: c.wall)
        return costs[(len(costs) - 1) // 2]


def measure(setup, batch_size, pairs_per_clip, fwdbwd, args):
    """One row: time ``repeats`` steps after a warm-up, each between two classification forwards.

    ``fwdbwd`` is the :class:`common.Cost` of one encoder forward-backward of the batch (for the bound).
    """
    device = setup.device
    batch = setup.batch(batch_size)
    x = setup.representation(batch)
    brain = setup.brain(pairs_per_clip)
    # CUDA's caching allocator and kernel choice need a step of the real size; on a CPU a 2-clip step of the same
    # configuration warms the code paths at a fraction of the cost.
    warm = batch if device.type == "cuda" else setup.batch(min(2, batch_size))
    brain.fit_batch(warm)
    setup.forward(x)  # untimed: the first forward after a training step also pays for the switch of shapes
    forwards, steps = [setup.forward(x)], []
    repeats = args.repeats or (3 if batch_size <= 8 else 1)
    with common.PeakMemory(device) as memory:
        for _ in range(repeats):
            steps.append(common.time_call(lambda: brain.fit_batch(batch), device))
            forwards.append(setup.forward(x))
    n_pairs = len(grid_pairs(batch_size, pairs_per_clip))
    row = _row(setup, batch_size, pairs_per_clip, n_pairs, steps, forwards, fwdbwd, memory.peak_mb, memory.delta_mb,
               "measured")
    row["step_rss_mb"] = memory.rss_delta_mb
    return row, (steps, forwards, fwdbwd)


def _row(setup, batch_size, pairs_per_clip, n_pairs, steps, forwards, fwdbwd, peak_mb, step_mb, note):
    """A CSV row from the step costs, the forwards around them (one more than steps) and the forward-backward."""
    step = statistics.median(s.wall for s in steps)
    ratios, cpu_ratios = zip(*(s.ratio_to_forwards(a + b) for s, a, b in zip(steps, forwards, forwards[1:])))
    forward = statistics.median(f.wall for f in forwards)
    cpu_forward = statistics.median(f.cpu for f in forwards)
    # lower bound of a step: one forward of the B clips + one forward-backward per masked pair
    bound = forward + fwdbwd.wall * n_pairs / batch_size
    cpu_bound = cpu_forward + fwdbwd.cpu * n_pairs / batch_size
    cpu_step = statistics.median(s.cpu for s in steps)
    return {
        "backend": setup.backend,
        "batch": batch_size,
        "pairs_per_clip": "full" if pairs_per_clip is None else pairs_per_clip,
        "pairs": n_pairs,
        "clips_per_s": batch_size / step,
        "step_seconds": step,
        "ratio_to_forward": statistics.median(ratios),
        "cpu_ratio_to_forward": statistics.median(cpu_ratios),
        "forward_seconds": forward,
        "fwdbwd_seconds": fwdbwd.wall,
        "bound_clips_per_s": batch_size / bound,
        "fraction_of_bound": bound / step,
        "cpu_fraction_of_bound": cpu_bound / cpu_step,
        "peak_mem_mb": peak_mb,
        "step_mem_mb": step_mb,
        "repeats": len(steps),
        "note": note,
        "device": setup.device.type,
        "precision": setup.precision_name,
        "size": setup.args.size,
        "load_1min": common.load_1min(),
    }


def extrapolate_full_grid(setup, batch_size, rows, measured):
    """The B x B row from the k=1 and k=2 measurements of the same batch: time and memory linear in the pairs.

    ``measured`` maps pairs_per_clip to ``(steps, forwards, fwdbwd)`` costs as :func:`_row` takes them; ``rows``
    holds their rows (for the memory). Returns None when either is missing.
    """
    by_k = {r["pairs_per_clip"]: r for r in rows
            if (r["backend"], r["batch"], r["precision"]) == (setup.backend, batch_size, setup.precision_name)}
    if 1 not in by_k or 2 not in by_k or 1 not in measured or 2 not in measured:
        return None
    n_pairs = batch_size * batch_size
    (steps1, forwards1, fwdbwd), (steps2, _, _) = measured[1], measured[2]
    pairs1, pairs2 = by_k[1]["pairs"], by_k[2]["pairs"]

    def linear(one, two):
        return one + (n_pairs - pairs1) * (two - one) / (pairs2 - pairs1)

    steps = [common.Cost(linear(a.wall, b.wall), linear(a.cpu, b.cpu)) for a, b in zip(steps1, steps2)]
    step_mb = linear(by_k[1]["step_mem_mb"], by_k[2]["step_mem_mb"])
    peak_mb = by_k[1]["peak_mem_mb"] - by_k[1]["step_mem_mb"] + step_mb
    row = _row(setup, batch_size, None, n_pairs, steps, forwards1, fwdbwd, peak_mb, step_mb,
               f"extrapolated from k=1 and k=2 (linear in pairs): {n_pairs} pairs > --max-pairs")
    row["repeats"] = 0
    return row


def breakdown(setup, batch_size, pairs_per_clip):
    """Each stage of one training step, mirroring ``LMACZSBrain.compute_forward`` stage by stage.

    Returns a list of ``(stage, Cost, wall ratio, CPU ratio)``, each stage compared with the classification
    forwards timed right before and after it.
    """
    device, clap = setup.device, setup.clap
    batch = setup.batch(batch_size)
    x_ref = setup.representation(batch)
    brain = setup.brain(pairs_per_clip)
    wav = batch.wav.data.to(device)
    captions = list(batch.caption)
    stages = []
    forwards = [setup.forward(x_ref), setup.forward(x_ref)]

    def timed(name, fn, warmup=True):
        result = {}
        with setup.precision():
            if warmup:
                fn()
            cost = common.time_call(lambda: result.setdefault("out", fn()), device)
        forwards.append(setup.forward(x_ref))
        before, after = forwards[-2], forwards[-1]
        stages.append((name, cost, *cost.ratio_to_forwards(before + after)))
        return result["out"]

    x, audio, hidden = timed("encoder forward, unmasked (no grad)", lambda: brain.encode(wav))
    with torch.no_grad():
        text = timed("caption embeddings, as the recipe computes them", lambda: clap.encode_text(captions))
        if clap.name == "msclap":
            # MS-CLAP pads every caption to 100 tokens; BERT's attention mask makes the padding irrelevant to the
            # CLS embedding, so padding to the longest caption gives the same embedding for less work.
            shorter = timed("caption embeddings, padded to the longest caption (proposed)",
                            lambda: _msclap_text_longest(clap, captions))
            logger.info("max |difference| between the two caption embeddings: %.2e",
                        float((shorter.float() - text.float()).abs().max()))
    pairs = grid_pairs(batch_size, pairs_per_clip, device=device)
    ti, aj = pairs[:, 0], pairs[:, 1]
    masks = timed("decoder forward", lambda: brain.masks_for([h[aj] for h in hidden], text[ti], x[aj]))
    masked = timed("encoder forward, masked (with graph)", lambda: brain.embed_masked(masks * x[aj]))
    loss = timed("loss", lambda: zero_shot_loss(text.float(), audio.float(), masked.float(), masks.float(),
                                                LAMBDA_REG, LAMBDA_DIV, pairs=pairs)["loss"])
    timed("backward (masked encoder + decoder)", loss.backward, warmup=False)
    timed("Adam step", brain.optimizer.step, warmup=False)
    timed("one whole fit_batch, for comparison", lambda: brain.fit_batch(batch), warmup=False)
    return stages


def _msclap_text_longest(clap, captions):
    tokens = clap.tokenizer(captions, max_length=clap.text_max_length, padding="longest", truncation=True,
                            return_attention_mask=True, return_token_type_ids=True, return_tensors="pt")
    tokens = {k: tokens[k].to(clap.log_logit_scale.device) for k in ("input_ids", "attention_mask", "token_type_ids")}
    return l2_normalize(clap.caption_encoder(**tokens))


def parse_pairs(value):
    return None if value == "full" else int(value)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(parser, default_out="results/benchmarks/train_speed.csv", several_precisions=True)
    parser.add_argument("--backends", nargs="+", default=["msclap"], choices=["msclap", "laion"])
    parser.add_argument("--batches", nargs="+", type=int, default=None, help="batch sizes (default: 2 8 32).")
    parser.add_argument("--pairs", nargs="+", type=parse_pairs, default=[1, 2, None],
                        help="pairs_per_clip values: integers and/or 'full' (default: 1 2 full).")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed steps per row, each between two forwards, after a warm-up (median; default: 3 up "
                             "to batch 8, 1 above).")
    parser.add_argument("--max-pairs", type=int, default=None,
                        help="largest full grid actually run (default: 16 on CPU, 256 on CUDA); larger ones are "
                             "extrapolated from k=1 and k=2.")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time each stage of a k=1 step at the largest batch; written to <out>_breakdown.md.")
    parser.add_argument("--profile", action="store_true",
                        help="also write a torch.profiler table of one k=1 step at the smallest batch to "
                             "<out>_profile.md.")
    args = parser.parse_args(argv)
    common.resolve_quick(args, batches=([2, 4], [2, 8, 32]), repeats=(1, None))
    if args.max_pairs is None:
        args.max_pairs = 256 if args.device.startswith("cuda") else 16
    common.require_at_least_one(parser, args, "repeats")
    return args


def run_batch(setup, batch_size, pairs_order, args, rows):
    """Append the rows of every ``pairs_per_clip`` at one batch size (and the current precision) to ``rows``."""
    # The bound's forward-backward does not depend on the pairs: timed once per batch size.
    fwdbwd = setup.fwdbwd_cost(batch_size, args.repeats or 2)
    measured = {}
    for pairs_per_clip in pairs_order:
        n_pairs = len(grid_pairs(batch_size, pairs_per_clip))
        label = "full" if pairs_per_clip is None else pairs_per_clip
        if pairs_per_clip is None and n_pairs > args.max_pairs:
            row = extrapolate_full_grid(setup, batch_size, rows, measured)
            if row is None:
                logger.info("Skipping the %d-pair full grid at batch %d (no k=1/k=2 rows to extrapolate)", n_pairs,
                            batch_size)
                continue
        else:
            logger.info("%s | %s | batch %d | pairs_per_clip %s (%d pairs) | load %s", setup.backend,
                        setup.precision_name, batch_size, label, n_pairs, common.load_average())
            try:
                row, measured[pairs_per_clip] = measure(setup, batch_size, pairs_per_clip, fwdbwd, args)
            except torch.OutOfMemoryError as err:
                logger.warning("Out of memory at batch %d, pairs %s: %s", batch_size, label, err)
                torch.cuda.empty_cache()
                continue
        rows.append(row)
        common.write_csv(args.out, rows, COLUMNS)


def main(argv=None):
    args = parse_args(argv)
    device = common.configure(args.threads, args.device)
    start = time.perf_counter()
    # k values first: an oversized full grid is extrapolated from them.
    pairs_order = sorted({p for p in args.pairs if p is not None}) + ([None] if None in args.pairs else [])
    rows, notes = [], []
    for backend in args.backends:
        setup = Setup(backend, args, device)
        for precision in args.precision:
            setup.precision_name = precision
            for batch_size in args.batches:
                run_batch(setup, batch_size, pairs_order, args, rows)
            if args.breakdown:
                notes.append(_write_breakdown(setup, max(args.batches), args))
            if args.profile:
                notes.append(_write_profile(setup, min(args.batches), args))
        del setup
    print(f"\nLMAC-ZS training step, {args.size} models, {' and '.join(args.precision)}, {common.machine(device)}")
    print(f"Load average (1/5/15 min) at the end: {common.load_average()}; run took "
          f"{time.perf_counter() - start:.0f} s\n")
    print(common.markdown_table(rows, TABLE_COLUMNS))
    for note in notes:
        print(note)
    return rows


def _write_breakdown(setup, batch_size, args):
    stages = breakdown(setup, batch_size, 1)
    lines = [f"### {setup.backend}: one k=1 training step at batch {batch_size}, stage by stage "
             f"({setup.precision_name}, {args.device}, load average {common.load_average()})", "",
             "Each stage is compared with the classification forwards timed right before and after it.", "",
             "| stage | seconds | x forward (wall) | x forward (CPU time) |", "|---|---|---|---|"]
    lines += [f"| {name} | {cost.wall:.3f} | {wall:.2f} | {cpu:.2f} |" for name, cost, wall, cpu in stages]
    text = "\n".join(lines) + "\n"
    with open(os.path.splitext(args.out)[0] + "_breakdown.md", "a", encoding="utf-8") as fout:
        fout.write(text + "\n")
    return text


def _write_profile(setup, batch_size, args):
    brain = setup.brain(1)
    batch = setup.batch(batch_size)
    text = common.profile_call(lambda: brain.fit_batch(batch), setup.device,
                               f"{setup.backend}: one k=1 training step at batch {batch_size} ({setup.precision_name})")
    with open(os.path.splitext(args.out)[0] + "_profile.md", "a", encoding="utf-8") as fout:
        fout.write(text + "\n")
    return text


if __name__ == "__main__":
    main()
