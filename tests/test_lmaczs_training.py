"""LMAC-ZS integration: the Brain overfits a handful of clips; the LMAC-ZS interpreter's contract on both backends."""

import math

import pytest
import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.utils.train_logger import FileTrainLogger

from speechbrain_lmaczs.classifier import ZeroShotClassifier, make_prompts
from speechbrain_lmaczs.data import load_clip
from speechbrain_lmaczs.interpreters import build_interpreter
from speechbrain_lmaczs.lmaczs.brain import LMACZSBrain
from speechbrain_lmaczs.lmaczs.decoder import MaskDecoder
from speechbrain_lmaczs.lmaczs.domains import MelMasking, STFTMasking
from speechbrain_lmaczs.lmaczs.loss import zero_shot_loss


def _batch(clap, samples_dir, names, captions):
    items = []
    for name, caption in zip(names, captions):
        wav = load_clip(str(samples_dir / "ESC50" / "audio" / name), clap.sample_rate, clap.clip_samples)
        items.append({"id": name, "wav": wav, "caption": caption})
    return PaddedBatch(items)


def test_brain_overfits_two_clips(tiny_msclap, samples_dir, tmp_path):
    torch.manual_seed(0)
    decoder = MaskDecoder(tiny_msclap.hidden_channels, tiny_msclap.joint_dim, width=32)
    hparams = {"lambda_reg": 0.05, "lambda_div": 0.1, "use_logit_scale": True, "pairs_per_clip": None,
               "train_logger": FileTrainLogger(str(tmp_path / "log.txt"))}
    brain = LMACZSBrain(
        modules={"clap": tiny_msclap, "decoder": decoder, "domain": MelMasking(tiny_msclap.frontend)},
        opt_class=lambda params: torch.optim.Adam(params, lr=1e-2),
        hparams=hparams,
        run_opts={"device": "cpu"},
    )
    brain.on_fit_start()
    batch = _batch(tiny_msclap, samples_dir, ["1-100032-A-0.wav", "2-100648-A-43.wav"],
                   make_prompts(["dog", "car_horn"]))
    clap_before = {k: v.clone() for k, v in tiny_msclap.state_dict().items()}
    losses = [float(brain.fit_batch(batch)) for _ in range(40)]
    assert min(losses[-5:]) < 0.5 * losses[0], losses
    # CLAP stays frozen: only the decoder learned.
    assert all(torch.equal(v, tiny_msclap.state_dict()[k]) for k, v in clap_before.items())
    with torch.no_grad():
        out = brain.compute_forward(batch, stage=None)
    masks, pairs = out["masks"], out["pairs"].tolist()
    assert masks.std() > 0.02  # not a constant mask
    # the two prompts give different masks on the same clip
    assert (masks[pairs.index([0, 0])] - masks[pairs.index([1, 0])]).abs().mean() > 1e-3


def _brain(clap, tmp_path, domain, **extra):
    torch.manual_seed(0)
    decoder = MaskDecoder(clap.hidden_channels, clap.joint_dim, width=16)
    hparams = {"lambda_reg": 0.05, "lambda_div": 0.1, "use_logit_scale": True, "pairs_per_clip": None,
               "train_logger": FileTrainLogger(str(tmp_path / "log.txt")), **extra}
    brain = LMACZSBrain(
        modules={"clap": clap, "decoder": decoder, "domain": domain},
        opt_class=lambda params: torch.optim.Adam(params, lr=1e-2),
        hparams=hparams,
        run_opts={"device": "cpu"},
    )
    brain.on_fit_start()
    return brain


class _ShiftMasking(MelMasking):
    """A non-multiplicative masking: the mask lowers the log-mel by 20 dB where it is 0."""

    calls = 0

    def apply_mask(self, x, mask):
        type(self).calls += 1
        return x - 20.0 * (1.0 - mask)


def test_training_masks_through_the_domain(tiny_msclap, samples_dir, tmp_path):
    domain = _ShiftMasking(tiny_msclap.frontend)
    brain = _brain(tiny_msclap, tmp_path, domain)
    batch = _batch(tiny_msclap, samples_dir, ["1-100032-A-0.wav", "2-100648-A-43.wav"],
                   make_prompts(["dog", "car_horn"]))
    with torch.no_grad():
        out = brain.compute_forward(batch, stage=None)
        x, masks, pairs = out["x"], out["masks"], out["pairs"]
        calls = _ShiftMasking.calls
        assert calls >= 1
        expected = brain.embed_masked(x[pairs[:, 1]] - 20.0 * (1.0 - masks))
        assert torch.allclose(out["masked_audio"], expected, atol=1e-6)
        # what the paper's product would have given is something else
        assert not torch.allclose(out["masked_audio"], brain.embed_masked(masks * x[pairs[:, 1]]), atol=1e-3)


def test_paper_loss_is_unchanged_by_the_new_options_at_zero(tiny_msclap, samples_dir, tmp_path):
    batch = _batch(tiny_msclap, samples_dir, ["1-100032-A-0.wav", "2-100648-A-43.wav"],
                   make_prompts(["dog", "car_horn"]))
    losses = []
    for extra in ({}, {"lambda_mix": 0.0, "lambda_out": 0.0, "lambda_overlap": 0.0, "mix_target": "embedding"}):
        brain = _brain(tiny_msclap, tmp_path, MelMasking(tiny_msclap.frontend), **extra)
        with torch.no_grad():
            out = brain.compute_forward(batch, stage=None)
            assert "mix_masks" not in out  # no mixture is even formed
            losses.append(brain.compute_objectives(out, batch, sb.Stage.TRAIN))
            # the paper's formula on the paper's masking (mask * log-mel), as before the masking moved to the domain
            x, masks, pairs = out["x"], out["masks"], out["pairs"]
            masked = brain.embed_masked(masks * x[pairs[:, 1]])
            paper = zero_shot_loss(out["text"], out["audio"], masked, masks, 0.05, 0.1, pairs=pairs)["loss"]
            assert torch.equal(losses[-1], paper)
    assert torch.equal(losses[0], losses[1])


def test_sim_match_option_is_checked_and_one_sided(tiny_msclap, samples_dir, tmp_path):
    names = ["1-100032-A-0.wav", "2-100648-A-43.wav", "1-100038-A-14.wav"]
    names = [n for n in names if (samples_dir / "ESC50" / "audio" / n).is_file()][:2]
    batch = _batch(tiny_msclap, samples_dir, names, make_prompts(["dog", "car_horn"]))
    with pytest.raises(ValueError, match="sim_match must be one of"):
        _brain(tiny_msclap, tmp_path, MelMasking(tiny_msclap.frontend), sim_match="below")
    brain = _brain(tiny_msclap, tmp_path, MelMasking(tiny_msclap.frontend, fill="background"), sim_match="at_least")
    with torch.no_grad():
        out = brain.compute_forward(batch, stage=None)
        total = brain.compute_objectives(out, batch, sb.Stage.TRAIN)
        expected = zero_shot_loss(out["text"], out["audio"], out["masked_audio"], out["masks"], 0.05, 0.1,
                                  pairs=out["pairs"], at_least=True)["loss"]
        assert torch.allclose(total, expected)
    losses = [float(brain.fit_batch(batch)) for _ in range(10)]
    assert all(math.isfinite(v) for v in losses) and min(losses[-3:]) < losses[0], losses
    brain = _brain(tiny_msclap, tmp_path, MelMasking(tiny_msclap.frontend, fill="background"), sim_match="embedding")
    with torch.no_grad():
        out = brain.compute_forward(batch, stage=None)
        expected = zero_shot_loss(out["text"], out["audio"], out["masked_audio"], out["masks"], 0.05, 0.1,
                                  pairs=out["pairs"], own_embedding=True)["loss"]
        assert torch.allclose(brain.compute_objectives(out, batch, sb.Stage.TRAIN), expected)


@pytest.mark.parametrize("target", ["similarity", "embedding", "contrast"])
def test_mixture_terms_are_added_and_train(tiny_msclap, samples_dir, tmp_path, target):
    names = ["1-100032-A-0.wav", "2-100648-A-43.wav", "1-100038-A-14.wav"]
    names = [n for n in names if (samples_dir / "ESC50" / "audio" / n).is_file()][:2]
    batch = _batch(tiny_msclap, samples_dir, names, make_prompts(["dog", "car_horn"]))
    weights = {"lambda_mix": 1.0, "lambda_out": 0.5, "lambda_overlap": 2.0, "mix_target": target}
    brain = _brain(tiny_msclap, tmp_path, MelMasking(tiny_msclap.frontend, mask_on="power"), **weights)
    with torch.no_grad():
        out = brain.compute_forward(batch, stage=None)
        # one mixture (clips 0 + 1), explained for both captions
        assert out["mix_source"].tolist() == [0, 1] and out["mix_other"].tolist() == [1, 0]
        assert out["mix_masks"].shape == (2, *out["x"].shape[1:])
        total = brain.compute_objectives(out, batch, sb.Stage.TRAIN)
        terms = brain.mixture_terms(out)
        paper = zero_shot_loss(out["text"], out["audio"], out["masked_audio"], out["masks"], 0.05, 0.1,
                               pairs=out["pairs"])["loss"]
        expected = paper + terms["mix"] + 0.5 * terms["out"] + 2.0 * terms["overlap"]
        assert torch.allclose(total, expected, atol=1e-5)
        t, a = out["text"], out["audio"]
        if target == "similarity":
            mix = ((t * a).sum(-1) - (t * out["mix_masked_audio"]).sum(-1)).abs().sum()
        elif target == "embedding":
            mix = (1 - (a * out["mix_masked_audio"]).sum(-1)).sum()
        else:  # the own caption (rows: sources 0, 1) against the other's (1, 0), temperature 0.1
            margin = ((t - t.flip(0)) * out["mix_masked_audio"]).sum(-1)
            mix = (0.1 * torch.nn.functional.softplus(-margin / 0.1)).sum()
        assert torch.allclose(terms["mix"], mix, atol=1e-6)
        assert torch.allclose(terms["overlap"], (out["mix_masks"][0] * out["mix_masks"][1]).mean(), atol=1e-6)
    losses = [float(brain.fit_batch(batch)) for _ in range(15)]
    assert all(math.isfinite(v) for v in losses) and min(losses[-3:]) < losses[0], losses


@pytest.mark.parametrize("domain_cls", [MelMasking, STFTMasking])
def test_mask_transfer_target_trains_the_mixture_mask_toward_each_source_own_mask(tiny_msclap, samples_dir, tmp_path,
                                                                                   domain_cls):
    names = ["1-100032-A-0.wav", "2-100648-A-43.wav"]
    batch = _batch(tiny_msclap, samples_dir, names, make_prompts(["dog", "car_horn"]))
    domain = domain_cls(tiny_msclap.frontend, fill="background")
    with pytest.raises(ValueError, match="mix_target must be one of"):
        _brain(tiny_msclap, tmp_path, domain, lambda_mix=1.0, mix_target="masks")
    with pytest.raises(ValueError, match="needs an embedding mix_target"):
        _brain(tiny_msclap, tmp_path, domain, lambda_mix=1.0, lambda_out=1.0, mix_target="mask")
    brain = _brain(tiny_msclap, tmp_path, domain, lambda_mix=2.0, mix_target="mask")
    with torch.no_grad():
        out = brain.compute_forward(batch, stage=None)
        assert "mix_masked_audio" not in out  # no masked encoder pass on the mixture
        assert torch.allclose(out["mix_masks"], torch.sigmoid(out["mix_logits"]))
        # each source's share of the mixture, by hand from the two clips' representations as power
        power = domain.power(out["x"])
        share = out["mix_share"]
        assert torch.allclose(share[0], power[0] / (power[0] + power[1]))
        assert torch.allclose(share[0] + share[1], torch.ones_like(share[0]), atol=1e-6)
        # the target: the own caption's mask on the clean source (pair (j, j) of the grid) times that share
        pairs = out["pairs"].tolist()
        own = torch.stack([out["masks"][pairs.index([j, j])] for j in (0, 1)])
        target = own * share
        weight = target + own.flip(0) * share.flip(0)  # what either source's own mask keeps of the mixture
        p = out["mix_masks"]
        bce = -(target * torch.log(p) + (1 - target) * torch.log(1 - p))
        bce = ((weight * bce).flatten(1).sum(-1) / weight.flatten(1).sum(-1)).sum()
        terms = brain.mixture_terms(out)
        assert torch.allclose(terms["mix"], bce, atol=1e-5)
        paper = zero_shot_loss(out["text"], out["audio"], out["masked_audio"], out["masks"], 0.05, 0.1,
                               pairs=out["pairs"])["loss"]
        assert torch.allclose(brain.compute_objectives(out, batch, sb.Stage.TRAIN), paper + 2.0 * bce, atol=1e-5)
    before = float(terms["mix"])
    for _ in range(15):
        brain.fit_batch(batch)
    with torch.no_grad():
        after = float(brain.mixture_terms(brain.compute_forward(batch, stage=None))["mix"])
    assert math.isfinite(after) and after < before, (before, after)


@pytest.mark.parametrize("domain_cls", [MelMasking, STFTMasking])
def test_deletion_term_charges_what_the_mask_leaves_out(tiny_msclap, samples_dir, tmp_path, domain_cls):
    batch = _batch(tiny_msclap, samples_dir, ["1-100032-A-0.wav", "2-100648-A-43.wav"],
                   make_prompts(["dog", "car_horn"]))
    domain = domain_cls(tiny_msclap.frontend, fill="background")
    brain = _brain(tiny_msclap, tmp_path, domain, lambda_del=2.0, pairs_per_clip=2)
    with torch.no_grad():
        out = brain.compute_forward(batch, stage=None)
        # by hand: each clip with its OWN caption's mask removed, and with every bin removed (the domain's absent)
        x, t, pairs = out["x"], out["text"], out["pairs"].tolist()
        own = torch.stack([out["masks"][pairs.index([j, j])] for j in (0, 1)])
        left_out = brain.embed_masked(domain.apply_mask(x, 1.0 - own))
        nothing = brain.embed_masked(domain.apply_mask(x, torch.zeros_like(own)))
        assert torch.allclose(out["deleted_audio"], left_out, atol=1e-6)
        assert torch.allclose(out["absent_audio"], nothing, atol=1e-6)
        term = ((t * left_out).sum(-1) - (t * nothing).sum(-1)).clamp_min(0).sum()
        paper = zero_shot_loss(t, out["audio"], out["masked_audio"], out["masks"], 0.05, 0.1,
                               pairs=out["pairs"])["loss"]
        assert torch.allclose(brain.compute_objectives(out, batch, sb.Stage.TRAIN), paper + 2.0 * term, atol=1e-5)
        # a mask that keeps nothing leaves the whole clip out; one that keeps everything leaves out nothing (term 0)
        empty = brain.deletion_forward(x, out["pairs"], torch.zeros_like(out["masks"]))
        assert torch.allclose(empty["deleted_audio"], out["audio"], atol=1e-5)
        full = {**out, **brain.deletion_forward(x, out["pairs"], torch.ones_like(out["masks"]))}
        assert float(brain.compute_objectives(full, batch, sb.Stage.TRAIN) - paper) == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="lambda_del"):
        _brain(tiny_msclap, tmp_path, domain, lambda_del=-1.0)
    losses = [float(brain.fit_batch(batch)) for _ in range(10)]
    assert all(math.isfinite(v) for v in losses) and min(losses[-3:]) < losses[0], losses


@pytest.mark.parametrize("domain_cls", [MelMasking, STFTMasking])
def test_lmaczs_interpreter_contract(tiny_clap, domain_cls):
    torch.manual_seed(0)
    domain = domain_cls(tiny_clap.frontend)
    prompts = make_prompts(["dog", "rain", "car_horn"])
    clf = ZeroShotClassifier(tiny_clap, prompts, to_logmel=domain.to_logmel)
    decoder = MaskDecoder(tiny_clap.hidden_channels, tiny_clap.joint_dim, width=16).eval()
    interpreter = build_interpreter("lmaczs", clf, decoder=decoder)
    wav = torch.randn(3, tiny_clap.clip_samples) * torch.tensor([[0.1], [0.5], [1.0]])
    x = domain.representation(wav)
    masks = interpreter.explain(x)
    assert masks.shape == x.shape
    assert torch.isfinite(masks).all() and masks.min() >= 0 and masks.max() <= 1
    # batch independence
    alone = interpreter.explain(x[1:2], target=int(clf(x[1:2]).argmax()))
    assert torch.allclose(masks[1:2], alone, atol=1e-5)
    # a prompt target equals the index target of the same class prompt
    assert torch.allclose(interpreter.explain(x, target=prompts[2]), interpreter.explain(x, target=2), atol=1e-5)
    # the masks are exactly the decoder's for the target's text embedding (one encoder + one decoder pass)
    _, hidden = clf.embed(x, return_hidden=True)
    direct = decoder(hidden, clf.text_embeddings[[1, 1, 1]], x.shape[1:])
    assert torch.allclose(interpreter.explain(x, target=1), direct, atol=1e-6)


@pytest.mark.parametrize("domain_cls", [MelMasking, STFTMasking])
def test_lmaczs_interpreter_feeds_the_input_skip_the_representation_in_db(tiny_clap, domain_cls):
    from speechbrain_lmaczs.interpreters.lmaczs import LMACZSInterpreter

    torch.manual_seed(0)
    domain = domain_cls(tiny_clap.frontend)
    clf = ZeroShotClassifier(tiny_clap, make_prompts(["dog", "rain"]), to_logmel=domain.to_logmel)
    decoder = MaskDecoder(tiny_clap.hidden_channels, tiny_clap.joint_dim, width=16, input_skip=4).eval()
    with pytest.raises(ValueError, match="masking domain"):
        LMACZSInterpreter(clf, decoder)
    interpreter = LMACZSInterpreter(clf, decoder, domain)
    x = domain.representation(0.3 * torch.randn(2, tiny_clap.clip_samples))
    masks = interpreter.explain(x, target=1)
    assert masks.shape == x.shape
    _, hidden = clf.embed(x, return_hidden=True)
    direct = decoder(hidden, clf.text_embeddings[[1, 1]], x.shape[1:], skip=domain.to_db(x))
    assert torch.allclose(masks, direct, atol=1e-6)
