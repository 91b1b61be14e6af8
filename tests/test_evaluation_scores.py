"""The evaluation's readable scores (issue 13) on a tiny model: masking through the domain (the paper's log-mel
masking bit for bit), the constant-mean reference rows, and the prompt selectivity of the mixture condition."""

import math

import pytest
import torch
from test_evaluation import N_QUICK, fast_settings, manifest, model, read_csv  # noqa: F401 (fixtures)

from speechbrain_lmaczs import evaluation
from speechbrain_lmaczs.evaluation import EvalSettings, by_method, evaluate
from speechbrain_lmaczs.evaluation.setup import Setup, batch_loader, condition_dataset, mixture_partners
from speechbrain_lmaczs.lmaczs.domains import MelMasking
from speechbrain_lmaczs.lmaczs.pretrained import TrainedLMACZS
from speechbrain_lmaczs.metrics import METRIC_NAMES


class ProductMasking(MelMasking):
    """``mask * x`` written out, as the evaluation computed it before it asked the domain."""

    def apply_mask(self, x, mask):
        return mask * x


def with_domain(model, domain):
    return TrainedLMACZS(model.clap, model.decoder, domain).eval()


def test_paper_masking_scores_are_mask_times_x_bit_for_bit(model, manifest, tmp_path):  # noqa: F811
    settings = fast_settings(methods=("gradcam",))
    frontend = model.clap.frontend
    runs = {}
    for name, domain in (
        ("paper", MelMasking(frontend)),
        ("product", ProductMasking(frontend)),
        ("power", MelMasking(frontend, mask_on="power")),
    ):
        evaluate(with_domain(model, domain), manifest, str(tmp_path / name), settings)
        runs[name] = [{k: r[k] for k in METRIC_NAMES} for r in read_csv(tmp_path / name / "per_clip.csv")]
    assert runs["paper"] == runs["product"]  # the same strings: the same floats
    # and the evaluation does ask the domain: power masking scores the same masks differently
    assert [r["AD"] for r in runs["power"]] != [r["AD"] for r in runs["paper"]]


class ConstantMasks:
    """An interpreter whose masks are already constant (0.3 for clip 0, 0.7 for the next, ...)."""

    normalization = "constant"

    def explain(self, x, target=None):
        values = torch.tensor([0.3, 0.7, 0.5, 0.9])[: x.shape[0]]
        return values[:, None, None].expand_as(x).clone()


def test_the_reference_row_is_a_constant_mask_of_the_same_mean(model, manifest, tmp_path, monkeypatch):  # noqa: F811
    rows = evaluate(model, manifest, str(tmp_path / "real"), fast_settings(methods=("lmaczs",)))
    method, reference = by_method(rows)["lmaczs"], by_method(rows, mask="constant_mean")["lmaczs"]
    assert reference["MM"] == pytest.approx(method["MM"], rel=1e-6)
    assert reference["SPS"] == pytest.approx(0.0, abs=1e-6) and reference["accuracy"] == method["accuracy"]
    per_clip = read_csv(tmp_path / "real" / "per_clip.csv")
    for clip in {r["id"] for r in per_clip}:
        mine = {r["mask"]: r for r in per_clip if r["id"] == clip}
        assert float(mine["constant_mean"]["MM"]) == pytest.approx(float(mine["method"]["MM"]), rel=1e-6)
    assert "| *LMAC-ZS const.* |" in (tmp_path / "real" / "results.md").read_text()

    # Masks that are constant already: the reference row scores exactly the same masks.
    monkeypatch.setattr(evaluation.setup, "make_interpreter", lambda *args, **kwargs: ConstantMasks())
    rows = evaluate(model, manifest, str(tmp_path / "constant"), fast_settings(methods=("gradcam",)))
    method, reference = by_method(rows)["gradcam"], by_method(rows, mask="constant_mean")["gradcam"]
    for name in METRIC_NAMES + ("accuracy",):
        assert reference[name] == pytest.approx(method[name], rel=1e-6, abs=1e-9), name


def test_prompt_selectivity_of_the_mixture_by_hand(model, manifest, tmp_path):  # noqa: F811
    settings = fast_settings(methods=("gradcam",), conditions=("clean", "mixture"), max_clips=len(manifest))
    rows = evaluate(model, manifest, str(tmp_path), settings)
    assert math.isnan(by_method(rows)["gradcam"]["selectivity"])
    mixture = {r["mask"]: r for r in rows if r["condition"] == "mixture"}
    assert math.isfinite(mixture["method"]["selectivity"]) and math.isfinite(mixture["constant_mean"]["selectivity"])
    assert "PS (prompt selectivity" in (tmp_path / "results.md").read_text()

    # Every clip of the mixture condition, by hand: explain its class and its contaminant's class, mask, score.
    setup = Setup(model, manifest, settings, "this is the sound of {label}", "cpu")
    partners = mixture_partners(setup, settings, manifest)
    assert set(partners) == set(manifest)
    interpreter = setup.interpreter("gradcam", settings)
    expected = {}
    loader, _ = batch_loader(condition_dataset(setup, settings, manifest, "mixture", None), settings)
    for batch in loader:
        x = setup.domain.representation(batch.wav.data)
        for i, clip in enumerate(batch.id):
            a, b = int(batch.label[i]), partners[clip]
            assert setup.labels[b] == manifest[setup_contaminant(setup, settings, manifest, clip)]["class_string"]
            with torch.no_grad():
                probs = []
                for target in (a, b):
                    mask = interpreter.explain(x[i : i + 1], torch.tensor([target]))
                    logits = setup.classifier(mask * x[i : i + 1])[0, : setup.n_classes]
                    probs.append(torch.softmax(logits, dim=-1))
            expected[clip] = (
                math.nan if a == b else 100 * float((probs[0][a] - probs[0][b] + probs[1][b] - probs[1][a]) / 2)
            )
    per_clip = [r for r in read_csv(tmp_path / "per_clip.csv") if r["condition"] == "mixture" and r["mask"] == "method"]
    assert len(per_clip) == len(manifest)
    assert any(not math.isnan(value) for value in expected.values())
    for r in per_clip:
        value = expected[r["id"]]
        if math.isnan(value):
            assert math.isnan(float(r["selectivity"]))
        else:
            assert float(r["selectivity"]) == pytest.approx(value, abs=1e-3)
    defined = [v for v in expected.values() if not math.isnan(v)]
    assert mixture["method"]["selectivity"] == pytest.approx(sum(defined) / len(defined), abs=1e-3)


def setup_contaminant(setup, settings, manifest, clip):
    from speechbrain_lmaczs.evaluation.setup import condition_contaminator

    return condition_contaminator(setup, settings, manifest, "mixture").contaminant_id(clip)


def test_by_method_rejects_an_unknown_mask_kind():
    with pytest.raises(ValueError, match="mask must be one of"):
        by_method([], mask="reference")
    assert EvalSettings().conditions[1] == "mixture"
