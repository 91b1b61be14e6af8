"""LMACZSBrain: trains the mask decoder over a frozen CLAP with the zero-shot loss."""

import logging

import speechbrain as sb
import torch
from speechbrain.utils.distributed import run_on_main

from speechbrain_lmaczs.classifier import ZeroShotClassifier
from speechbrain_lmaczs.distributed import RankShareSampler, gather_objects
from speechbrain_lmaczs.errors import ConfigError
from speechbrain_lmaczs.lmaczs.checkpoints import set_aside_incomplete_checkpoints
from speechbrain_lmaczs.lmaczs.decoder import masks_on_grid
from speechbrain_lmaczs.lmaczs.loss import (
    MIX_TARGETS,
    deletion,
    grid_pairs,
    mask_overlap,
    mask_transfer,
    mix_pairs,
    mixture_consistency,
    own_pair_rows,
    ratio_mask,
    zero_shot_loss,
)
from speechbrain_lmaczs.metrics import MetricAccumulator, faithfulness_metrics

logger = logging.getLogger(__name__)

#: the loss options beyond the paper (yaml keys) and their defaults, with which the loss is the paper's
LOSS_OPTIONS = {
    "sim_match": "exact", "lambda_mix": 0.0, "mix_target": "similarity", "lambda_out": 0.0, "lambda_overlap": 0.0,
    "lambda_del": 0.0,
}
#: values of ``sim_match``: ``exact`` (the paper's | C - C' |), ``at_least`` (only a loss of similarity is charged) or
#: ``embedding`` (a clip masked for its own caption must keep the clip's whole embedding: 1 - a . a')
SIM_MATCH = ("exact", "at_least", "embedding")


def check_loss_options(settings):
    """Raise a :class:`ConfigError` (a ``ValueError``) for a bad loss option in ``settings`` (a yaml's plain
    settings or the Brain's hparams; a missing option is the paper's). The training script calls it before
    anything is created, the Brain again on construction."""
    options = {**LOSS_OPTIONS, **{k: v for k, v in settings.items() if k in LOSS_OPTIONS and v is not None}}
    if options["sim_match"] not in SIM_MATCH:
        raise ConfigError(f"sim_match must be one of {SIM_MATCH}, got {options['sim_match']!r}.")
    if options["mix_target"] not in MIX_TARGETS:
        raise ConfigError(f"mix_target must be one of {MIX_TARGETS}, got {options['mix_target']!r}.")
    for key in (k for k in LOSS_OPTIONS if k.startswith("lambda_")):
        try:
            weight = float(options[key])
        except (TypeError, ValueError):
            weight = float("nan")
        if not weight >= 0:
            raise ConfigError(f"{key} is the weight of a loss term: a number >= 0 (0: off), got {options[key]!r}.")
    if options["mix_target"] == "mask" and float(options["lambda_out"]) > 0:
        raise ConfigError("lambda_out matches the mixture masked by 1 - M to a clip's embedding: it needs an "
                          "embedding mix_target (similarity, embedding, both_prompts or contrast), not mask.")


class LMACZSBrain(sb.Brain):
    """Brain holding the LMAC-ZS decoder and its loss.

    ``modules`` must contain ``clap`` (a frozen :class:`CLAPBackend`), ``decoder`` (a :class:`MaskDecoder`) and
    ``domain`` (a :class:`MaskingDomain` built on the CLAP's front-end). ``hparams`` must contain ``lambda_reg``,
    ``lambda_div``, ``pairs_per_clip`` (None: the paper's full B x B grid of text/audio pairs; k: each clip with its
    own caption and k - 1 others, see :func:`grid_pairs`), ``use_logit_scale`` and ``train_logger``.

    ``sim_match`` ``"at_least"`` (not the paper; ``"exact"`` is) makes every similarity term one-sided: a masked
    clip is charged only for matching its prompt less than its target (:func:`zero_shot_loss`); ``"embedding"``
    charges a clip masked for its OWN caption ``1 - a . a'`` (its whole embedding must be kept; cross pairs keep
    the paper's term).

    Loss terms beyond the paper (each off, and the loss exactly the paper's, when its weight is 0 or absent):
    mixtures of two clips of the batch are formed on the fly (:func:`mix_pairs`; waveforms summed) and explained
    for each source's caption; ``lambda_mix`` weighs mix-consistency (the masked mixture must match the CLEAN
    source, :func:`mixture_consistency` with ``mix_target`` ``"similarity"``, ``"embedding"``, ``"both_prompts"``
    or ``"contrast"``; or, with ``"mask"``, the mask on the mixture must be the source's own mask where the source
    dominates, :func:`mask_transfer`), ``lambda_out``
    the complement term (the mixture masked by 1 - M must match the OTHER source) and ``lambda_overlap`` the
    overlap of the two sources' masks on their mixture (:func:`mask_overlap`). ``lambda_del`` weighs the deletion
    term on single clips (:func:`deletion`: a clip with its own caption's mask removed must match the caption no
    better than the clip with every bin removed, so the mask keeps all that still matches the caption, not only
    its most telling part; two more encoder passes per clip, one with gradient). Validation adds them too, so the
    checkpoint kept is the one best on these ground-truth-free criteria as well.

    Batches carry ``wav`` (padded waveforms at the encoder's rate) and ``caption``. Validation and test batches of a
    labelled set also carry ``label`` (class index); with ``eval_prompts`` given, those stages compute zero-shot accuracy, the
    eight faithfulness metrics for the mask of the predicted class, and prompt sensitivity (mean absolute
    difference between the masks of the two most likely prompts).

    Parameters
    ----------
    *args, **kwargs
        As for :class:`speechbrain.Brain`.
    eval_prompts : list of str, optional
        Class prompts of the evaluation set.
    """

    def __init__(
        self, modules=None, opt_class=None, hparams=None, run_opts=None, checkpointer=None, eval_prompts=None
    ):
        # The loss options beyond the paper are optional in the hparams; their defaults give the paper's loss.
        hparams = {**LOSS_OPTIONS, **(hparams or {})}
        check_loss_options(hparams)
        super().__init__(modules, opt_class, hparams, run_opts, checkpointer)
        self.eval_prompts = list(eval_prompts) if eval_prompts else None
        self.classifier = None
        for p in self.modules.clap.parameters():
            if p.requires_grad:
                raise ValueError("The CLAP backend must be frozen (load it with load_clap, or call .freeze()).")

    # -- helpers -------------------------------------------------------------------------------------------------
    def encode(self, wav):
        """Representation, unmasked embedding and hidden maps of a waveform batch (no gradient)."""
        domain, clap = self.modules.domain, self.modules.clap
        with torch.no_grad():
            x = domain.representation(wav)
            audio, hidden = clap.encode_audio(domain.to_logmel(x), return_hidden=True)
        return x, audio, hidden

    def embed_masked(self, x):
        """Normalised embedding of masked representations (gradient flows to the mask)."""
        return self.modules.clap.encode_audio(self.modules.domain.to_logmel(x))

    @property
    def decoder(self):
        """The :class:`MaskDecoder` itself (under torchrun, ``modules.decoder`` is its DistributedDataParallel)."""
        return getattr(self.modules.decoder, "module", self.modules.decoder)

    def masks_for(self, hidden, text, x, logits=False):
        """One mask per (hidden maps, text embedding, representation ``x``) triple, (batch, time, freq); ``logits``:
        the masks' logits instead."""
        # Training goes through the DDP wrapper (its forward is what synchronizes the gradients); evaluation calls
        # the decoder itself, so that ranks holding different numbers of validation batches never wait on each other.
        decoder = self.modules.decoder if self.modules.decoder.training else self.decoder
        return masks_on_grid(decoder, hidden, text, x, self.modules.domain, logits=logits)

    # -- Brain contract ------------------------------------------------------------------------------------------
    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wav, _ = batch.wav
        x, audio, hidden = self.encode(wav)
        with torch.no_grad():
            text = self.modules.clap.encode_text(list(batch.caption))
        pairs = grid_pairs(wav.shape[0], self.hparams.pairs_per_clip, device=wav.device)
        ti, aj = pairs[:, 0], pairs[:, 1]
        masks = self.masks_for([h[aj] for h in hidden], text[ti], x[aj])
        masked = self.embed_masked(self.modules.domain.apply_mask(x[aj], masks))
        out = {
            "x": x, "audio": audio, "hidden": hidden, "text": text, "pairs": pairs, "masks": masks,
            "masked_audio": masked,
        }
        if self.hparams.lambda_del > 0:
            out.update(self.deletion_forward(x, pairs, masks))
        if self.uses_mixtures and wav.shape[0] >= 2:
            out.update(self.mixture_forward(wav, text, x))
        return out

    def deletion_forward(self, x, pairs, masks):
        """Embeddings of each clip with its own caption's mask removed (``1 - M``) and with every bin removed."""
        own = own_pair_rows(pairs, len(x))  # grid_pairs gives every clip its own caption
        domain = self.modules.domain
        with torch.no_grad():
            absent = self.modules.clap.encode_audio(domain.to_logmel(domain.absent(x)))
        return {"deleted_audio": self.embed_masked(domain.apply_mask(x, 1.0 - masks[own])), "absent_audio": absent}

    def mixture_weights(self):
        """Weights of the optional mixture terms, by term name (``mix``, ``out``, ``overlap``)."""
        return {"mix": self.hparams.lambda_mix, "out": self.hparams.lambda_out, "overlap": self.hparams.lambda_overlap}

    def term_weights(self):
        """Weights of every optional term added to the paper's loss: the mixture terms and ``del``."""
        return {**self.mixture_weights(), "del": self.hparams.lambda_del}

    @property
    def uses_mixtures(self):
        """Whether a mixture term of the loss is on."""
        return any(w > 0 for w in self.mixture_weights().values())

    def mixture_forward(self, wav, text, x):
        """Masks and masked embeddings of on-the-fly mixtures, each explained for both of its sources' captions.

        Rows are ordered (all first sources, all second sources): ``mix_source[r]`` is the clip whose caption row r
        explains, ``mix_other[r]`` the other clip of its mixture. ``x`` holds the clips' own representations (for
        each source's share of the mixture, ``mix_share``, with ``mix_target: mask``).
        """
        sources = mix_pairs(wav.shape[0], device=wav.device)
        mix_x, _, mix_hidden = self.encode(wav[sources[:, 0]] + wav[sources[:, 1]])
        rows = torch.arange(len(sources), device=wav.device).repeat(2)
        source, other = sources.T.reshape(-1), sources.flip(1).T.reshape(-1)
        domain = self.modules.domain
        logits = self.masks_for([h[rows] for h in mix_hidden], text[source], mix_x[rows], logits=True)
        masks = torch.sigmoid(logits)
        out = {"mix_source": source, "mix_other": other, "mix_masks": masks, "mix_logits": logits}
        if self.hparams.lambda_mix > 0 and self.hparams.mix_target == "mask":
            with torch.no_grad():
                power = domain.power(x.float())  # float32: 10^(dB/10) of a loud bin overflows float16
                out["mix_share"] = ratio_mask(power[source], power[other])
        elif self.hparams.lambda_mix > 0:
            out["mix_masked_audio"] = self.embed_masked(domain.apply_mask(mix_x[rows], masks))
        if self.hparams.lambda_out > 0:
            out["mix_out_audio"] = self.embed_masked(domain.apply_mask(mix_x[rows], 1.0 - masks))
        return out

    def mixture_terms(self, predictions):
        """The optional mixture terms (unweighted), as a dict of 0-d tensors."""
        text, audio = predictions["text"].float(), predictions["audio"].float()
        source, other = predictions["mix_source"], predictions["mix_other"]
        target = self.hparams.mix_target
        terms = {}
        if self.hparams.lambda_mix > 0 and target == "mask":
            own = own_pair_rows(predictions["pairs"], len(text))  # grid_pairs gives every clip its own caption
            terms["mix"] = mask_transfer(
                predictions["mix_logits"].float(), predictions["masks"][own[source]].float(),
                predictions["masks"][own[other]].float(), predictions["mix_share"].float(),
            )
        elif self.hparams.lambda_mix > 0:
            terms["mix"] = mixture_consistency(
                text[source], audio[source], predictions["mix_masked_audio"].float(), target, text[other],
                at_least=self.hparams.sim_match == "at_least",
            )
        if self.hparams.lambda_out > 0:
            terms["out"] = mixture_consistency(
                text[source], audio[other], predictions["mix_out_audio"].float(), target, text[other]
            )
        if self.hparams.lambda_overlap > 0:
            masks = predictions["mix_masks"].float()
            half = len(masks) // 2
            terms["overlap"] = mask_overlap(masks[:half], masks[half:])
        return terms

    def compute_objectives(self, predictions, batch, stage):
        out = zero_shot_loss(
            predictions["text"].float(),
            predictions["audio"].float(),
            predictions["masked_audio"].float(),
            predictions["masks"].float(),
            self.hparams.lambda_reg,
            self.hparams.lambda_div,
            pairs=predictions["pairs"],
            at_least=self.hparams.sim_match == "at_least",
            own_embedding=self.hparams.sim_match == "embedding",
        )
        terms = self.mixture_terms(predictions) if "mix_masks" in predictions else {}
        if "deleted_audio" in predictions:
            terms["del"] = deletion(predictions["text"].float(), predictions["deleted_audio"].float(),
                                    predictions["absent_audio"].float())
        weights = self.term_weights()
        for key, value in terms.items():
            out[key] = value
            out["loss"] = out["loss"] + weights[key] * value
        if stage != sb.Stage.TRAIN:
            self.n_eval_batches += 1
            for key in self.loss_parts:
                self.loss_parts[key] += float(out.get(key, 0.0))
            if self.eval_prompts is not None:
                self.evaluate_faithfulness(predictions, batch)
        return out["loss"]

    @torch.no_grad()
    def evaluate_faithfulness(self, predictions, batch):
        """Zero-shot accuracy, faithfulness metrics and prompt sensitivity on a labelled batch."""
        x, hidden = predictions["x"], predictions["hidden"]
        clf = self.classifier
        logits = clf.logits_from_embedding(predictions["audio"])
        probs = logits.softmax(-1)
        top2 = probs.topk(min(2, probs.shape[-1]), dim=-1).indices
        pred = top2[:, 0]
        mask = self.masks_for(hidden, clf.text_embeddings[pred], x)
        masked_in = clf(self.modules.domain.apply_mask(x, mask)).softmax(-1)
        masked_out = clf(self.modules.domain.apply_mask(x, 1.0 - mask)).softmax(-1)
        values = faithfulness_metrics(probs.float(), masked_in.float(), masked_out.float(), mask.float(), pred)
        labels = torch.as_tensor(batch.label, device=pred.device)
        values["accuracy"] = (pred == labels).float() * 100.0
        if top2.shape[1] > 1:
            second = self.masks_for(hidden, clf.text_embeddings[top2[:, 1]], x)
            values["prompt_sensitivity"] = (mask - second).abs().flatten(1).mean(-1)
        self.metrics.update(values)

    def on_stage_start(self, stage, epoch=None):
        self.loss_parts = {"sim": 0.0, "reg": 0.0, "div": 0.0}
        self.loss_parts.update({k: 0.0 for k, weight in self.term_weights().items() if weight > 0})
        self.n_eval_batches = 0
        if stage == sb.Stage.TRAIN:
            # After an interrupted run, the recovered step shows that training resumes mid-epoch.
            logger.info("Training epoch %s from step %d", epoch, self.step)
        if stage != sb.Stage.TRAIN and self.eval_prompts is not None:
            if self.classifier is None:
                self.classifier = ZeroShotClassifier(
                    self.modules.clap,
                    self.eval_prompts,
                    to_logmel=self.modules.domain.to_logmel,
                    use_logit_scale=self.hparams.use_logit_scale,
                )
            self.metrics = MetricAccumulator()

    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs):
        """As :meth:`speechbrain.Brain.make_dataloader`; under torchrun each rank validates and tests its own share
        of the clips (:class:`RankShareSampler`: no clip twice), and :meth:`on_stage_end` sums the shares."""
        if stage != sb.Stage.TRAIN and self.distributed_launch:
            loader_kwargs = dict(loader_kwargs, sampler=RankShareSampler(dataset), shuffle=False)
        return super().make_dataloader(dataset, stage, ckpt_prefix=ckpt_prefix, **loader_kwargs)

    def _reduce_over_ranks(self, stage_loss):
        """Mean loss, loss parts and metrics over every rank's clips (this rank's alone without torchrun)."""
        metrics = getattr(self, "metrics", None) if self.eval_prompts is not None else None
        shares = gather_objects((stage_loss * self.n_eval_batches, self.n_eval_batches, self.loss_parts, metrics))
        n_batches = max(1, sum(share[1] for share in shares))
        loss = sum(share[0] for share in shares) / n_batches
        parts = {key: sum(share[2][key] for share in shares) / n_batches for key in self.loss_parts}
        if metrics is not None:
            metrics = MetricAccumulator()
            for share in shares:
                metrics.merge(share[3])
        return loss, parts, metrics

    def _check_ranks_in_step(self):
        """Under torchrun, log every rank's step count and whether their decoders still hold the same weights."""
        with torch.no_grad():
            checksum = float(sum(p.double().sum() for p in self.decoder.parameters()))
        shares = gather_objects((self.step, checksum))
        if len(shares) > 1:
            logger.info("Steps per rank: %s; decoder weights equal on every rank: %s", [s[0] for s in shares],
                        len({s[1] for s in shares}) == 1)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            self._check_ranks_in_step()
            return
        stage_loss, parts, metrics = self._reduce_over_ranks(stage_loss)
        stats = {"loss": stage_loss}
        stats.update({f"loss_{k}": v for k, v in parts.items()})
        if metrics is not None:
            summary = metrics.summary()
            stats.update({k: float(v) for k, v in summary.items() if k not in ("n", "n_nonfinite")})
            stats["n_clips"] = int(summary["n"])
        if stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch},
                train_stats={"loss": self.train_loss},
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(meta=stats, min_keys=["loss"])
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )
        self.last_stats = stats

    def init_optimizers(self):
        # Only the decoder learns; the CLAP stays frozen.
        self.optimizer = self.opt_class(self.modules.decoder.parameters())
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)
            # Brain.on_fit_start resumes right after this, now that every recoverable is registered: first set
            # aside any checkpoint a killed run left half-written.
            run_on_main(set_aside_incomplete_checkpoints, args=[self.checkpointer])
