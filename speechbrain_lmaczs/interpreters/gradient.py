"""Input-gradient interpreters (captum): SmoothGrad and Integrated Gradients.

Both attribute the target score to every bin of the representation the classifier takes (log-mel, or the STFT
of the STFT masking domain), so their saliency is already on the input grid; the shared normalization takes its
absolute value and divides by the per-clip maximum.
"""

from contextlib import contextmanager

import torch
from captum import attr as captum_attr

from speechbrain_lmaczs.interpreters.base import MASK_EPS, Interpreter


def _positive_int(value, name):
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return int(value)


@contextmanager
def seeded(seed, device):
    """Run the block with the global RNG of ``device`` seeded, restoring the previous RNG state on exit.

    Example
    -------
    >>> with seeded(3, torch.device("cpu")):
    ...     a = torch.rand(2)
    >>> with seeded(3, torch.device("cpu")):
    ...     b = torch.rand(2)
    >>> torch.equal(a, b)
    True
    """
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class InputGradientInterpreter(Interpreter):
    """Base of the interpreters whose saliency lives on the input grid (no upsampling)."""

    rectify = "abs"

    def __init__(self, classifier, domain=None):
        super().__init__(classifier, domain=domain)

    def floor(self, inputs):
        """(batch,) the lowest value masking can give each clip: ``min(min x, min absent(x))``.

        Under power Mel masking and STFT masking it is the silence level; under the paper's log-mel masking it is
        the lower of the clip's minimum and 0 dB.
        """
        return torch.minimum(inputs.flatten(1).amin(dim=1), self.absent(inputs).flatten(1).amin(dim=1))

    @property
    def normalization(self):
        return f"{self.rectify} -> on the input (T,F) grid, no upsampling -> / per-clip max (eps {MASK_EPS:g})"


class SmoothGrad(InputGradientInterpreter):
    """SmoothGrad (Smilkov et al., 2017): captum ``NoiseTunnel(Saliency)``, ``nt_type="smoothgrad"``.

    The gradient of the target score is averaged (signed) over ``n_samples`` noisy copies of each clip, with
    Gaussian noise of standard deviation ``noise_level * (max(x) - floor)``: the clip's dynamic range above the
    floor, the lowest value the masking domain can give it (:meth:`InputGradientInterpreter.floor`: silence under
    power Mel or STFT masking, ``min(min x, 0 dB)`` under the paper's log-mel masking, where it is L-MAC's
    ``max - min`` for any clip with a bin below 0 dB). L-MAC: 0.15, 50 samples. The absolute value is taken
    once, by the shared normalization. Each clip draws its noise from the global RNG
    seeded with ``seed`` (and restored afterwards), so a clip's map does not depend on the batch it came in.

    Parameters
    ----------
    classifier : ZeroShotClassifier
        The classifier to explain.
    n_samples : int
        Noisy copies per clip.
    noise_level : float
        Noise standard deviation relative to each clip's dynamic range above the floor.
    batch_size : int
        Noisy copies sent through the classifier at once (bounds memory).
    seed : int
        Seed of the noise.
    domain : MaskingDomain, optional
        Defines the floor (see :class:`~speechbrain_lmaczs.interpreters.base.Interpreter`).
    """

    display_name = "SmoothGrad"

    def __init__(self, classifier, n_samples=50, noise_level=0.15, batch_size=50, seed=0, domain=None):
        super().__init__(classifier, domain=domain)
        self.n_samples = _positive_int(n_samples, "n_samples")
        self.batch_size = _positive_int(batch_size, "batch_size")
        if not float(noise_level) >= 0.0:
            raise ValueError(f"noise_level must be >= 0, got {noise_level}.")
        self.noise_level = float(noise_level)
        self.seed = int(seed)

    def saliency(self, inputs, targets):
        tunnel = captum_attr.NoiseTunnel(captum_attr.Saliency(targets.scorer))
        maps = []
        floors = self.floor(inputs)
        for i in range(inputs.shape[0]):
            clip = inputs[i : i + 1]
            stdev = self.noise_level * float(clip.max() - floors[i])
            with seeded(self.seed, clip.device):
                maps.append(
                    tunnel.attribute(
                        clip,
                        nt_type="smoothgrad",
                        nt_samples=self.n_samples,
                        nt_samples_batch_size=self.batch_size,
                        stdevs=stdev,
                        target=targets.index[i : i + 1],
                        abs=False,
                    )
                )
        return torch.cat(maps)


class IntegratedGradients(InputGradientInterpreter):
    """Integrated Gradients (Sundararajan et al., 2017): captum ``IntegratedGradients`` from an "absent" baseline.

    Attributions are ``(x - b) * mean gradient along the straight path from b to x`` (Gauss-Legendre, ``n_steps``
    points); they sum to ``score(x) - score(b)`` up to the quadrature error. The baseline ``b`` is the input with
    nothing in it, in the masking domain's convention: ``"absent"`` (default) is what a zero mask leaves
    (:meth:`~speechbrain_lmaczs.lmaczs.domains.MaskingDomain.absent`: silence under power Mel or STFT masking,
    0 dB, the paper's zero baseline, under log-mel masking or without a domain); ``"silence"`` is the front-end's
    silence level whatever the masking (needs a domain).

    Parameters
    ----------
    classifier : ZeroShotClassifier
        The classifier to explain.
    n_steps : int
        Points on the path.
    batch_size : int
        Path points sent through the classifier at once, all clips together (captum's ``internal_batch_size``).
    baseline : str
        ``"absent"`` or ``"silence"`` (see above).
    domain : MaskingDomain, optional
        Defines the baseline (see :class:`~speechbrain_lmaczs.interpreters.base.Interpreter`).
    """

    display_name = "IG"
    BASELINES = ("absent", "silence")

    def __init__(self, classifier, n_steps=50, batch_size=64, baseline="absent", domain=None):
        super().__init__(classifier, domain=domain)
        self.n_steps = _positive_int(n_steps, "n_steps")
        self.batch_size = _positive_int(batch_size, "batch_size")
        if baseline not in self.BASELINES:
            raise ValueError(f"IG baseline must be one of {self.BASELINES}, got {baseline!r}.")
        if baseline == "silence" and domain is None:
            raise ValueError("IG baseline 'silence' needs the masking domain (build it with a model or a domain).")
        self.baseline = baseline

    def baselines(self, inputs):
        """The baseline of each clip, shaped like ``inputs``."""
        return self.domain.silence(inputs) if self.baseline == "silence" else self.absent(inputs)

    def saliency(self, inputs, targets):
        method = captum_attr.IntegratedGradients(targets.scorer)
        return method.attribute(
            inputs,
            baselines=self.baselines(inputs),
            target=targets.index,
            n_steps=self.n_steps,
            internal_batch_size=self.batch_size,
        )
