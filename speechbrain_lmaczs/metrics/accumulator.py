"""Streaming means of per-clip metrics, in constant memory, that never let a non-finite value in unnoticed."""

import logging
import math

import torch

logger = logging.getLogger(__name__)


class MetricAccumulator:
    """Streaming per-clip means in constant memory, with explicit handling of non-finite values.

    Running sums are kept in float64 per metric, so memory does not grow with the number of clips. Per-clip
    rows can be written as they arrive (e.g. to a ``csv.DictWriter`` for ``per_clip.csv``), so masks never need
    to be stored.

    Non-finite values (NaN, +-inf) never enter a mean silently. With ``on_nonfinite="count"`` (default) they are
    left out of that metric's mean, counted per metric (:attr:`nonfinite_counts`, and ``"n_nonfinite"`` in the
    summary: the clips with at least one non-finite metric) and logged as a warning; per-clip rows keep them
    (written as ``nan``/``inf``). With ``on_nonfinite="raise"`` the update raises ``FloatingPointError`` before
    anything of that batch is accumulated.

    Parameters
    ----------
    names : sequence of str, optional
        Metric names to accumulate; taken from the first update if None. Every update must give exactly these.
    on_nonfinite : {"count", "raise"}
        Policy for non-finite per-clip values (see above).
    row_writer : object, optional
        Anything with ``writerow(dict)`` (e.g. ``csv.DictWriter`` whose fieldnames are the ``extra`` columns
        followed by the metric names); one row per clip is written at each update.

    Examples
    --------
    >>> acc = MetricAccumulator()
    >>> acc.update({"AI": torch.tensor([100.0, 0.0]), "MM": torch.tensor([0.2, 0.4])})
    >>> acc.update({"AI": torch.tensor([100.0]), "MM": torch.tensor([float("nan")])})
    >>> summary = acc.summary()
    >>> round(summary["AI"], 3), round(summary["MM"], 3), summary["n"], summary["n_nonfinite"]
    (66.667, 0.3, 3, 1)
    """

    POLICIES = ("count", "raise")

    def __init__(self, names=None, on_nonfinite="count", row_writer=None):
        if on_nonfinite not in self.POLICIES:
            raise ValueError(f"on_nonfinite must be one of {self.POLICIES}, got {on_nonfinite!r}.")
        self.names = tuple(names) if names is not None else None
        self.on_nonfinite = on_nonfinite
        self.row_writer = row_writer
        self.n = 0
        self.n_nonfinite = 0
        self._sums = {}
        self._finite_counts = {}
        self.nonfinite_counts = {}
        if self.names is not None:
            self._init_names(self.names)

    def _init_names(self, names):
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"Metric names must be unique and non-empty, got {names}.")
        self.names = tuple(names)
        self._sums = {name: 0.0 for name in self.names}
        self._finite_counts = {name: 0 for name in self.names}
        self.nonfinite_counts = {name: 0 for name in self.names}

    def _as_columns(self, values):
        if self.names is None:
            self._init_names(tuple(values))
        if set(values) != set(self.names):
            raise KeyError(f"update() got metrics {sorted(values)} but this accumulator holds {list(self.names)}.")
        columns = {}
        size = None
        for name in self.names:
            column = torch.as_tensor(values[name]).detach().reshape(-1).to("cpu", torch.float64)
            if size is not None and column.numel() != size:
                raise ValueError(f"Metric {name!r} has {column.numel()} clips, others have {size}.")
            size = column.numel()
            columns[name] = column
        return columns, size

    def update(self, values, extra=None):
        """Add one batch of per-clip values.

        Parameters
        ----------
        values : dict of str to torch.Tensor
            Metric name -> (batch,) per-clip values (e.g. the output of :func:`faithfulness_metrics`).
        extra : dict of str to sequence, optional
            Per-clip columns written to ``row_writer`` before the metrics (e.g. clip id, label); not averaged.
        """
        columns, size = self._as_columns(values)
        extra_columns = {}
        for key, column in (extra or {}).items():
            column = column.tolist() if torch.is_tensor(column) else list(column)
            if len(column) != size:
                raise ValueError(f"extra column {key!r} has {len(column)} entries for {size} clips.")
            extra_columns[key] = column
        finite = {name: torch.isfinite(column) for name, column in columns.items()}
        bad_clips = ~torch.stack(list(finite.values())).all(dim=0) if size else torch.zeros(0, dtype=torch.bool)
        if bad_clips.any():
            bad = {name: int((~mask).sum()) for name, mask in finite.items() if not mask.all()}
            if self.on_nonfinite == "raise":
                raise FloatingPointError(
                    f"Non-finite metric values in clips {bad_clips.nonzero().flatten().tolist()} of this batch: "
                    f"{bad}. Check the masks and probabilities of those clips."
                )
            logger.warning("Non-finite metric values left out of the means (per metric, this batch): %s", bad)
        for name, column in columns.items():
            ok = finite[name]
            self._sums[name] += float(column[ok].sum())
            self._finite_counts[name] += int(ok.sum())
            self.nonfinite_counts[name] += int((~ok).sum())
        self.n += size
        self.n_nonfinite += int(bad_clips.sum())
        if self.row_writer is not None:
            for i in range(size):
                row = {key: column[i] for key, column in extra_columns.items()}
                row.update({name: float(columns[name][i]) for name in self.names})
                self.row_writer.writerow(row)

    def merge(self, other):
        """Add the clips of ``other`` (e.g. another process's share of the same set); returns ``self``.

        The means of the merged accumulator are those of one accumulator fed every clip (sums and counts add up).

        >>> a, b = MetricAccumulator(), MetricAccumulator()
        >>> a.update({"AI": torch.tensor([100.0])})
        >>> b.update({"AI": torch.tensor([0.0, float("nan")])})
        >>> summary = a.merge(b).summary()
        >>> summary["AI"], summary["n"], summary["n_nonfinite"]
        (50.0, 3, 1)
        """
        if other.names is None:
            return self
        if self.names is None:
            self._init_names(other.names)
        if set(other.names) != set(self.names):
            raise KeyError(f"Cannot merge metrics {list(other.names)} into an accumulator of {list(self.names)}.")
        for name in self.names:
            self._sums[name] += other._sums[name]
            self._finite_counts[name] += other._finite_counts[name]
            self.nonfinite_counts[name] += other.nonfinite_counts[name]
        self.n += other.n
        self.n_nonfinite += other.n_nonfinite
        return self

    def summary(self):
        """Means over the finite values of each metric, plus ``"n"`` (clips) and ``"n_nonfinite"``.

        A metric with no finite value at all has mean NaN, with a logged warning.

        Returns
        -------
        dict
            Metric name -> mean (float), ``"n"`` -> int, ``"n_nonfinite"`` -> int.
        """
        if self.n == 0:
            raise ValueError("summary() called before any clip was added with update().")
        if self.n_nonfinite:
            logger.warning(
                "%d of %d clips had non-finite metric values, left out of the means: %s",
                self.n_nonfinite,
                self.n,
                {name: count for name, count in self.nonfinite_counts.items() if count},
            )
        means = {}
        for name in self.names:
            count = self._finite_counts[name]
            if count == 0:
                logger.warning("Metric %s has no finite value over %d clips; its mean is NaN.", name, self.n)
            means[name] = self._sums[name] / count if count else math.nan
        means["n"] = self.n
        means["n_nonfinite"] = self.n_nonfinite
        return means
