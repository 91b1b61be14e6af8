"""What the benchmark scripts share: full-size random CLAPs, timing, peak memory, precision, tables.

The full-size models have the released architectures (MS-CLAP 2022: CNN14 + BERT-base; LAION
``clap-htsat-unfused``: HTSAT + RoBERTa-base) with random weights: no checkpoint can be downloaded here, and the
cost of a forward does not depend on the weights' values. Their BatchNorm statistics are calibrated as the test
builders do, so that activations keep log-mel-like magnitudes through the network.

Every timing is a wall-clock time (and, on a CPU, the process's CPU time) after a device synchronisation; speed is
reported as a RATIO to one classification forward of the same batch timed in the same process next to it, because
absolute times on a shared machine move with the load (the load average is printed with every table).
"""

import contextlib
import csv
import ctypes
import dataclasses
import logging
import math
import os
import platform
import resource
import sys
import threading
import time

import torch

logger = logging.getLogger(__name__)

#: class labels of the benchmark's zero-shot classifier (10 ESC-50 classes; the count only changes a tiny matmul)
LABELS = ("dog", "rooster", "rain", "sea_waves", "crying_baby", "clock_tick", "helicopter", "chainsaw", "siren",
          "car_horn")

#: captions of the training benchmark, of Clotho-like lengths (8 to 20 words)
CAPTIONS = (
    "a dog barks twice while cars pass by on a wet street in the distance",
    "rain falls steadily on a tin roof and water drips from the gutter",
    "a man is talking while a door creaks open and footsteps approach",
    "birds chirping in a forest with wind blowing through the leaves",
    "a siren wails as a car horn honks in heavy city traffic",
    "waves crash on the shore and children are playing and laughing nearby",
    "someone is typing on a keyboard and a mouse click follows",
    "a chainsaw starts, idles for a while and then cuts through wood loudly",
)

SIZES = ("full", "tiny")
PRECISIONS = ("fp32", "bf16")


# ------------------------------------------------------------------------------------------------ environment
def configure(threads, device):
    """Threads for CPU ops, logging, and a checked device; returns the ``torch.device``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(int(threads))
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for, but torch sees no CUDA device on this machine.")
    if device.type == "cuda":
        # PyTorch's defaults are kept (what users get): "fp32" convolutions may run in TF32 on cuDNN.
        logger.info("CUDA %s: cudnn.allow_tf32=%s, matmul.allow_tf32=%s, cudnn.benchmark=%s",
                    torch.cuda.get_device_name(device), torch.backends.cudnn.allow_tf32,
                    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark)
    return device


def load_average():
    """The 1, 5 and 15 minute load averages as a string (what else was running shapes every CPU timing)."""
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # not available on every platform
        return "n/a"


def load_1min():
    """The 1-minute load average (NaN where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def machine(device):
    """One line describing where the numbers come from."""
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)}"
    else:
        where = f"{_cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    return f"{where}; torch {torch.__version__}; Python {platform.python_version()}"


def _cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fin:
            for line in fin:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def precision_context(device, precision):
    """Autocast to bf16 (``"bf16"``) or nothing (``"fp32"``) for the models' forwards."""
    if precision not in PRECISIONS:
        raise SystemExit(f"--precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ------------------------------------------------------------------------------------------------ models
def build_clap(backend, size, device, seed=0):
    """A frozen CLAP backend: ``size="full"`` (released architecture, random weights) or ``"tiny"`` (tests).

    The model is built and calibrated on the CPU (a few seconds for the full sizes), then moved to ``device``.
    """
    if size not in SIZES:
        raise SystemExit(f"size must be one of {SIZES}, got {size!r}.")
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if backend == "msclap":
            clap = _msclap(size)
        elif backend == "laion":
            clap = _laion(size)
        else:
            raise SystemExit(f"Unknown backend {backend!r}: use msclap or laion.")
    clap = clap.freeze().to(device)
    n_audio = sum(p.numel() for p in _audio_parameters(clap))
    logger.info("Built %s %s CLAP (%.1fM audio parameters) in %.1f s", size, backend, n_audio / 1e6,
                time.perf_counter() - start)
    return clap


def _audio_parameters(clap):
    if clap.name == "msclap":
        return clap.audio_encoder.parameters()
    return list(clap.model.audio_model.parameters()) + list(clap.model.audio_projection.parameters())


def _msclap(size):
    from speechbrain_lmaczs.clap.msclap import MSCLAP2022

    if size == "tiny":
        return MSCLAP2022.build_tiny()
    # bert-base's WordPiece vocabulary cannot be downloaded here; build_random's word-level one over the prompt
    # words gives the same sequence length (MS-CLAP pads every prompt to 100 tokens), hence the same text cost.
    return MSCLAP2022.build_random()


def _laion(size):
    from transformers import ClapConfig, ClapModel

    from speechbrain_lmaczs.clap.laion import LAIONCLAP, _default_feature_extractor, _tiny_tokenizer

    if size == "tiny":
        return LAIONCLAP.build_tiny()
    # transformers' ClapAudioConfig / ClapTextConfig defaults are the sizes of laion/clap-htsat-unfused
    # (HTSAT depths 2-2-6-2, 96 patch channels, 768 final; RoBERTa-base text tower; 512-d joint space).
    config = ClapConfig(projection_dim=512)
    model = ClapModel(config).eval()
    batch_norm = model.audio_model.audio_encoder.batch_norm
    batch_norm.running_mean.fill_(-40.0)
    batch_norm.running_var.fill_(100.0)
    text = config.text_config
    tokenizer = _tiny_tokenizer(text.pad_token_id, text.max_position_embeddings - 2, text.vocab_size)
    return LAIONCLAP(model, tokenizer, _default_feature_extractor())


def build_decoder(clap, device, width=128, n_text_tokens=4, seed=0):
    """The recipe's decoder (``lmaczs_mel.yaml``: width 128, 4 text tokens, 3 final upsamplings), random weights."""
    from speechbrain_lmaczs.lmaczs.decoder import MaskDecoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        decoder = MaskDecoder(clap.hidden_channels, clap.joint_dim, width=width, n_text_tokens=n_text_tokens,
                              n_final_upsamplings=3)
    return decoder.to(device).eval()


def random_clips(clap, batch, device, seed=0):
    """(batch, clip_samples) waveforms: noise plus a tone, different per clip, at the CLAP's rate and length."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(clap.clip_samples) / clap.sample_rate
    freqs = 200.0 + 3000.0 * torch.rand(batch, 1, generator=generator)
    wav = 0.05 * torch.randn(batch, clap.clip_samples, generator=generator) + 0.3 * torch.sin(2 * math.pi * freqs * t)
    return wav.to(device)


# ------------------------------------------------------------------------------------------------ timing
def synchronize(device):
    # CUDA kernels run asynchronously: without a sync the clock would stop before the work is done.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclasses.dataclass(frozen=True)
class Cost:
    """Wall-clock seconds and process CPU seconds (all threads) of some work.

    On a shared CPU the wall-clock time of the same work moves with how many cores the other processes leave us;
    the CPU time moves much less, so ratios of CPU times are the steadier estimate there. On a GPU the CPU time
    only counts the host's share and is left out (NaN).
    """

    wall: float
    cpu: float

    def __add__(self, other):
        return Cost(self.wall + other.wall, self.cpu + other.cpu)

    def ratio_to_forwards(self, around):
        """(wall, CPU) ratio of this cost to the mean of two forwards whose summed cost is ``around``."""
        return 2 * self.wall / around.wall, 2 * self.cpu / around.cpu

    def scaled(self, factor):
        """This cost times ``factor`` (work measured on a part, scaled up linearly)."""
        return Cost(self.wall * factor, self.cpu * factor)


def require_at_least_one(parser, args, *names):
    """``parser.error`` for the first option among ``names`` that is set (not None) and below 1."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")


def time_call(fn, device):
    """The :class:`Cost` of one call of ``fn`` (synchronised on both ends)."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Cost(wall, float("nan") if device.type == "cuda" else cpu)


# ------------------------------------------------------------------------------------------------ memory
class PeakMemory:
    """Peak memory of a block, three ways.

    - ``heap_*``: bytes the process has allocated and not freed (glibc ``mallinfo2``: in-use heap plus mmapped
      blocks, which is where CPU tensors live), sampled every ``interval`` seconds by a thread. Unlike the RSS it
      does not count memory that was freed but kept by the allocator, so it shows what the block really holds.
    - ``rss_*``: the process's resident memory. On Linux its high-water mark (``VmHWM``) is reset at entry by
      writing 5 to ``/proc/self/clear_refs``, so the peak is the block's own (``exact``); elsewhere ``ru_maxrss``
      (monotonic) is used and ``exact`` is False.
    - ``cuda_*``: ``torch.cuda.max_memory_allocated`` on a GPU (exact).

    ``peak_mb``, ``delta_mb`` and ``start_mb`` are those of the device the block ran on: the heap on CPU (the RSS
    where ``mallinfo2`` is missing), CUDA allocations on a GPU. ``*_peak_mb`` is the peak during the block,
    ``*_delta_mb`` that peak minus the value at entry (what the block added at its peak), in MiB.
    """

    def __init__(self, device, interval=0.002):
        self.device = device
        self.interval = interval
        self.exact = True

    def __enter__(self):
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.cuda_start_mb = torch.cuda.memory_allocated(self.device) / 2**20
        self.exact = _reset_rss_peak()
        self.rss_start_mb = _rss_mb("VmRSS")
        self.heap_start_mb = heap_in_use_mb()
        self._peak = [self.heap_start_mb]
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval):
            self._peak[0] = max(self._peak[0], heap_in_use_mb())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            synchronize(self.device)
        self._stop.set()
        self._sampler.join()
        self.heap_peak_mb = max(self._peak[0], heap_in_use_mb())
        self.heap_delta_mb = self.heap_peak_mb - self.heap_start_mb
        self.rss_peak_mb = _rss_mb("VmHWM") if self.exact else _maxrss_mb()
        self.rss_delta_mb = self.rss_peak_mb - self.rss_start_mb
        if self.device.type == "cuda":
            self.cuda_peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            self.cuda_delta_mb = self.cuda_peak_mb - self.cuda_start_mb
            self.start_mb, self.peak_mb, self.delta_mb = self.cuda_start_mb, self.cuda_peak_mb, self.cuda_delta_mb
        elif math.isnan(self.heap_start_mb):
            self.start_mb, self.peak_mb, self.delta_mb = self.rss_start_mb, self.rss_peak_mb, self.rss_delta_mb
        else:
            self.start_mb, self.peak_mb, self.delta_mb = self.heap_start_mb, self.heap_peak_mb, self.heap_delta_mb
        return False


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _mallinfo2():
    try:
        function = ctypes.CDLL(None).mallinfo2  # glibc >= 2.33
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2
    return function


_MALLINFO2 = _mallinfo2()


def heap_in_use_mb():
    """MiB the process holds through malloc (in-use heap + mmapped blocks); NaN without glibc's ``mallinfo2``."""
    if _MALLINFO2 is None:
        return math.nan
    info = _MALLINFO2()
    return (info.uordblks + info.hblkhd) / 2**20


def _reset_rss_peak():
    try:
        with open("/proc/self/clear_refs", "w") as fout:
            fout.write("5")
        return True
    except OSError:
        return False


def _rss_mb(field):
    """``VmRSS`` / ``VmHWM`` of this process in MiB (NaN where /proc is missing)."""
    try:
        with open("/proc/self/status", encoding="utf-8") as fin:
            for line in fin:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _maxrss_mb() if field == "VmHWM" else float("nan")


def _maxrss_mb():
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    per_mb = 2**20 if sys.platform == "darwin" else 2**10
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / per_mb


# ------------------------------------------------------------------------------------------------ profiles
def profile_call(fn, device, title, row_limit=15):
    """Run ``fn`` once under torch.profiler; the table of the ops with the most self time, as text."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    fn()  # warm-up outside the profile
    with profile(activities=activities) as prof:
        fn()
        synchronize(device)
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort_by, row_limit=row_limit)
    return f"### {title} (load average {load_average()})\n\n```\n{table}\n```\n"


# ------------------------------------------------------------------------------------------------ output
def write_csv(path, rows, columns):
    """Write ``rows`` (dicts) with ``columns``; floats rounded to 4 significant digits."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fout:
        writer = csv.DictWriter(fout, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _short(row.get(k, "")) for k in columns})
    logger.info("Wrote %s", path)


def _short(value):
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return value


def markdown_table(rows, columns):
    """A GitHub markdown table of ``rows`` restricted to ``columns``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(_short(row.get(k, ""))) for k in columns) + " |")
    return "\n".join(lines)


def resolve_quick(args, **quick_values):
    """Fill the options left unset (None): ``quick_values`` with ``--quick``, the defaults otherwise.

    ``quick_values`` maps an option to its (quick, normal) pair; ``size`` and ``decoder_width`` are always
    included. Options given on the command line are kept either way.
    """
    quick_values = {"size": ("tiny", "full"), "decoder_width": (16, 128), **quick_values}
    for name, (quick, normal) in quick_values.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else normal)
    return args


def add_common_arguments(parser, default_out, several_precisions=False):
    """Options every script takes; with ``several_precisions``, ``--precision`` takes a list."""
    parser.add_argument("--out", default=default_out, help="CSV file to write (default: %(default)s).")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s).")
    if several_precisions:
        parser.add_argument("--precision", nargs="+", default=["fp32"], choices=PRECISIONS,
                            help="fp32 and/or bf16 (autocast), each measured on the same models (default: fp32).")
    else:
        parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                            help="fp32, or bf16 autocast for the models (default: %(default)s).")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s).")
    parser.add_argument("--size", default=None, choices=SIZES,
                        help="full: released architectures, random weights (default); tiny: test models.")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny models and decoder, small batches, one repeat, unless given "
                             "explicitly (the numbers mean nothing).")
    parser.add_argument("--decoder-width", type=int, default=None,
                        help="channels of the decoder's deepest level (default: the recipe's 128; 16 with --quick).")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and clips.")
