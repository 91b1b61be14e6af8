"""LMAC-ZS integration: the Brain overfits a handful of clips; the LMAC-ZS interpreter's contract on both backends."""

import pytest
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.utils.train_logger import FileTrainLogger

from speechbrain_lmaczs.classifier import ZeroShotClassifier, make_prompts
from speechbrain_lmaczs.data import load_clip
from speechbrain_lmaczs.interpreters import build_interpreter
from speechbrain_lmaczs.lmaczs.brain import LMACZSBrain
from speechbrain_lmaczs.lmaczs.decoder import MaskDecoder
from speechbrain_lmaczs.lmaczs.domains import MelMasking, STFTMasking


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
