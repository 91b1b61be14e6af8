"""Several processes on one job: torchrun's ranks (training and evaluation) and independent shards (a SLURM array).

One rule splits clips between processes, :func:`shard_indices` (clip ``k`` goes to shard ``k mod n``, no clip
twice, none padded in), whether the processes are torchrun's ranks or the ``--shard=i/n`` jobs of a scheduler.
Files read by every rank but built by one (the yaml's CLAP, manifests) are built on the main process first:
:func:`load_hparams_main_first`.
"""

import ctypes
import logging
import os
import signal
import sys

import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import (
    ddp_barrier,
    ddp_init_group,
    get_rank,
    if_main_process,
    is_distributed_initialized,
)

logger = logging.getLogger(__name__)


def world():
    """``(rank, world_size)`` of this process: ``(0, 1)`` unless a process group is initialized."""
    if not is_distributed_initialized():
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def parse_shard(text):
    """``(index, count)`` of a 1-based ``"i/n"`` shard spec (a SLURM array task ``i`` of ``n``).

    >>> parse_shard("2/4")
    (2, 4)
    >>> parse_shard("5/4")
    Traceback (most recent call last):
    ...
    ValueError: shard '5/4' must be i/n with 1 <= i <= n (e.g. --shard=1/4), 1-based.
    """
    message = f"shard {text!r} must be i/n with 1 <= i <= n (e.g. --shard=1/4), 1-based."
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise ValueError(message) from None
    if not 1 <= index <= count:
        raise ValueError(message)
    return index, count


def shard_indices(n_items, index, count):
    """Positions of the items of shard ``index`` (1-based) of ``count``: every ``count``-th item from ``index - 1``.

    The shards partition ``range(n_items)`` exactly (no padding, no item twice); their sizes differ by at most one.

    >>> shard_indices(5, 1, 2), shard_indices(5, 2, 2)
    ([0, 2, 4], [1, 3])
    """
    return list(range(index - 1, n_items, count))


class RankShareSampler(torch.utils.data.Sampler):
    """This rank's share of a dataset for evaluation (:func:`shard_indices` of the rank), in order, no padding.

    Unlike ``DistributedSampler``, no clip is repeated to even the shares out, so metrics summed over ranks count
    every clip once.

    >>> list(RankShareSampler(range(5), rank=1, world_size=2))
    [1, 3]
    """

    def __init__(self, dataset, rank=None, world_size=None):
        default_rank, default_size = world()
        self.indices = shard_indices(
            len(dataset),
            (default_rank if rank is None else rank) + 1,
            default_size if world_size is None else world_size,
        )

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def gather_objects(obj):
    """``obj`` of every rank, in rank order (``[obj]`` in a single process); every rank must call it."""
    _, size = world()
    if size == 1:
        return [obj]
    gathered = [None] * size
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


#: prctl option: the signal a process receives when its parent dies (linux/prctl.h)
PR_SET_PDEATHSIG = 1


def exit_with_launcher():
    """Under torchrun on Linux, make this worker die (SIGKILL) when torchrun dies; returns whether it was armed.

    torchrun starts each worker in its own session, so a SIGKILL of torchrun (``kill -9``, the out-of-memory
    killer, a scheduler that signals only the launcher) leaves the workers running on their own: they go on writing
    checkpoints into the folder the restarted job resumes from. Armed, they end with their launcher.
    """
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        logger.warning("Could not ask to end with torchrun (errno %d).", ctypes.get_errno())
        return False
    if os.getppid() != parent:  # torchrun died before the request was made
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def start_processes(run_opts):
    """Join torchrun's process group (nothing without torchrun), the workers ending with their launcher."""
    exit_with_launcher()
    ddp_init_group(run_opts)


def load_hparams_main_first(hparams_file, overrides):
    """Load a recipe yaml on the main process, then on the others.

    Loading a yaml runs its ``!apply`` lines: the CLAP is built and saved (tiny-random) or downloaded (a hub id)
    there. Done by every rank at once, one rank reads the file another is still writing; here the others wait
    for the main process and then load what it wrote.
    """
    def load():
        with open(hparams_file, encoding="utf-8") as fin:
            return load_hyperpyyaml(fin, overrides)

    hparams = load() if if_main_process() else None
    ddp_barrier()
    if hparams is None:
        logger.debug("Rank %s loads the yaml after the main process.", get_rank())
        hparams = load()
    return hparams
