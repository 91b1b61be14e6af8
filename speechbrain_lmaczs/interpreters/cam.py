"""Class activation maps on the backend's ``cam_layer``: GradCAM, GradCAM++, ScoreCAM, GScoreCAM.

Every CAM weighs the channels of one hidden map A (batch, channels, t', f') and sums them,
``saliency = sum_c w_c A_c`` on the (t', f') grid; the shared normalization (ReLU, upsampling to the input grid,
per-clip max) turns it into a mask. The default layer is ``classifier.clap.cam_layer``, the place every backend
routes its deepest hidden map through in (batch, channels, time, freq) layout (HTSAT's map already unfolded).
"""

import logging
import math
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam

from speechbrain_lmaczs.interpreters.base import Interpreter
from speechbrain_lmaczs.interpreters.hooks import record_outputs, single_map

logger = logging.getLogger(__name__)


class CAMInterpreter(Interpreter):
    """Base of the CAMs: holds the layer and records its activations (and their gradients).

    Parameters
    ----------
    classifier : ZeroShotClassifier
        The classifier to explain.
    layer : torch.nn.Module, optional
        A submodule of the classifier that outputs (batch, channels, time, freq); ``classifier.clap.cam_layer``
        by default.
    upsample_mode : str
        Upsampling from the layer grid to the input grid: ``"nearest"`` (as L-MAC's GradCAM baseline),
        ``"nearest-exact"`` or ``"bilinear"``.
    domain : MaskingDomain, optional
        See :class:`~speechbrain_lmaczs.interpreters.base.Interpreter` (ScoreCAM masks the input through it).
    """

    rectify = "relu"

    def __init__(self, classifier, layer=None, upsample_mode="nearest", domain=None):
        super().__init__(classifier, upsample_mode=upsample_mode, domain=domain)
        layer = classifier.clap.cam_layer if layer is None else layer
        if not any(module is layer for module in classifier.modules()):
            raise ValueError("layer must be a submodule of the classifier (by default classifier.clap.cam_layer).")
        self.layer = layer

    def activations(self, inputs, targets, with_gradients):
        """The layer's activations A (batch, C, t, f) and, if asked, d(target score)/dA (else None)."""
        if not with_gradients:
            with torch.no_grad(), record_outputs(self.layer) as outputs:
                targets.scorer(inputs)
            return single_map(outputs).detach(), None
        # Frozen parameters: without an input that requires grad, A would not be part of a graph.
        inputs = inputs.detach().requires_grad_(True)
        with record_outputs(self.layer) as outputs:
            scores = targets.scores(inputs)
        acts = single_map(outputs)
        # Clips do not interact, so the gradient of the sum is each clip's own gradient.
        (grads,) = torch.autograd.grad(scores.sum(), acts)
        return acts.detach(), grads.detach()


class GradCAM(CAMInterpreter):
    """Grad-CAM (Selvaraju et al., 2017) through captum's ``LayerGradCam``.

    Channel weights are the target score's gradient averaged over the layer grid; the map is
    ``ReLU(sum_c w_c A_c)`` (``relu_attributions=True``). One forward and one backward per batch.
    """

    display_name = "GradCAM"

    def saliency(self, inputs, targets):
        attribution = LayerGradCam(targets.scorer, self.layer).attribute(
            inputs, target=targets.index, relu_attributions=True
        )
        if attribution.dim() != 4:
            raise ValueError(
                f"The CAM layer must output (batch, channels, time, freq); captum returned {tuple(attribution.shape)}."
            )
        return attribution[:, 0]


class GradCAMPlusPlus(CAMInterpreter):
    """Grad-CAM++ (Chattopadhyay et al., 2018) through pytorch-grad-cam's ``GradCAMPlusPlus``.

    The library object is used as a context manager, so its hooks are removed even when the call fails, and
    it is asked for the signed map on the layer grid: the library's own ReLU/min-max/OpenCV resize is replaced
    by the normalization shared with every other baseline. Targets are explicit per-clip callables
    (the library's ``targets=None`` would take an argmax over whatever the model returns).
    """

    display_name = "GradCAM++"

    def saliency(self, inputs, targets):
        # Imported here: pytorch-grad-cam pulls OpenCV and torchvision (seconds), needed by this class only.
        from speechbrain_lmaczs.interpreters._grad_cam_library import LayerGridGradCAMPlusPlus

        # The library puts the model in eval mode; give the caller's modules their own modes back.
        modes = [(module, module.training) for module in targets.scorer.modules()]
        try:
            with LayerGridGradCAMPlusPlus(targets.scorer, [self.layer]) as cam:
                # Frozen parameters: the layer output only gets a gradient if the input asks for one.
                raw = cam(inputs.detach().requires_grad_(True), targets.callables())
        finally:
            for module, training in modes:
                module.training = training
        return torch.as_tensor(raw, device=inputs.device)


class ScoreCAM(CAMInterpreter):
    """Score-CAM (Wang et al., 2020): channel weights from masked forwards, no gradient.

    For each clip and each channel c, the activation A_c is upsampled (bilinear) to the input grid, min-max
    normalized to [0, 1] and applied to the input as the masking domain applies a mask (the paper's Mel masking:
    multiplied with it; power masking: it scales the mel power, so 0 is silence); the target score of that masked input (which includes the
    classifier's logit scale: with raw cosines the softmax below would be almost uniform) is ``s_c``. Weights are
    ``softmax_c(s_c)`` over the channels kept by :meth:`select_channels` (all of them here); other channels get
    weight 0. Cost: 1 + C forwards per clip, ``batch_size`` masked inputs at a time.

    Parameters
    ----------
    classifier, layer, upsample_mode, domain
        See :class:`CAMInterpreter`.
    batch_size : int
        Masked copies of a clip sent through the classifier at once (bounds memory).
    """

    display_name = "ScoreCAM"
    #: whether :meth:`select_channels` needs the gradients of the target score
    needs_gradients = False

    def __init__(self, classifier, layer=None, upsample_mode="nearest", batch_size=64, domain=None):
        super().__init__(classifier, layer=layer, upsample_mode=upsample_mode, domain=domain)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size}.")
        self.batch_size = int(batch_size)
        if not classifier.use_logit_scale:
            logger.warning(
                "%s on raw cosines (use_logit_scale=False): the softmax over channel scores will be almost uniform.",
                type(self).__name__,
            )

    def select_channels(self, activations, gradients):
        """Channels (LongTensor) whose masked forwards are scored, for one clip's (C, t, f) activations."""
        return torch.arange(activations.shape[0], device=activations.device)

    def saliency(self, inputs, targets):
        acts, grads = self.activations(inputs, targets, with_gradients=self.needs_gradients)
        weights = torch.zeros(acts.shape[:2], dtype=acts.dtype, device=acts.device)
        for i, clip in enumerate(inputs):
            channels = self.select_channels(acts[i], None if grads is None else grads[i])
            scores = self.masked_scores(clip, acts[i, channels], targets, i)
            weights[i, channels] = torch.softmax(scores, dim=0).to(acts.dtype)
        return (weights[:, :, None, None] * acts).sum(dim=1)

    @torch.no_grad()
    def masked_scores(self, clip, channel_maps, targets, clip_index):
        """Target score of ``clip`` (T, F) masked by each of ``channel_maps`` (K, t, f) -> (K,)."""
        column = int(targets.index[clip_index])
        scores = []
        for chunk in channel_maps.split(self.batch_size):
            masks = F.interpolate(chunk[:, None], size=clip.shape, mode="bilinear", align_corners=False)[:, 0]
            low = masks.flatten(1).amin(dim=1)[:, None, None]
            high = masks.flatten(1).amax(dim=1)[:, None, None]
            # A constant channel (a dead ReLU unit) gives an all-zero mask rather than 0/0.
            masks = (masks - low) / (high - low).clamp_min(1e-12)
            scores.append(targets.scorer(self.apply_mask(clip[None], masks.to(clip.dtype)))[:, column])
        return torch.cat(scores)


class GScoreCAM(ScoreCAM):
    """gScore-CAM (Chen et al., 2022): Score-CAM on the top-k channels ranked by mean gradient.

    One forward and one backward give each channel's gradient of the target score averaged over the layer grid
    (the Grad-CAM weight); only the ``k = ceil(top_fraction * C)`` largest are scored by masked forwards, and the
    softmax runs over those k, so every other channel has weight exactly 0. Cost: 1F + 1B + k forwards per clip.

    Parameters
    ----------
    classifier, layer, upsample_mode, batch_size, domain
        See :class:`ScoreCAM`.
    top_fraction : float
        Fraction of the channels kept, in (0, 1] (0.1: k = 205 of CNN14's 2048).
    """

    display_name = "GScoreCAM"
    needs_gradients = True

    def __init__(self, classifier, layer=None, upsample_mode="nearest", batch_size=64, top_fraction=0.1, domain=None):
        super().__init__(classifier, layer=layer, upsample_mode=upsample_mode, batch_size=batch_size, domain=domain)
        if not 0.0 < float(top_fraction) <= 1.0:
            raise ValueError(f"top_fraction must lie in (0, 1], got {top_fraction}.")
        self.top_fraction = float(top_fraction)

    def select_channels(self, activations, gradients):
        # The tolerance keeps float rounding (0.1 * 30 = 3.0000000000000004) from adding a channel.
        k = max(1, math.ceil(self.top_fraction * activations.shape[0] - 1e-9))
        return gradients.mean(dim=(1, 2)).topk(k).indices
