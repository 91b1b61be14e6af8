"""Head-to-head evaluation logic on a tiny classifier: result files, streaming, resume, sanity checks, settings."""

import csv
import math
from pathlib import Path

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_lmaczs import evaluation
from speechbrain_lmaczs.classifier import ZeroShotClassifier
from speechbrain_lmaczs.data import MissingDataError, read_manifest
from speechbrain_lmaczs.evaluation import (
    METHODS,
    PER_CLIP_COLUMNS,
    RESULT_COLUMNS,
    SELECTIVITY,
    VALUE_NAMES,
    EvalSettings,
    evaluate,
    prepare_evaluation_data,
    randomization_blocks,
)
from speechbrain_lmaczs.evaluation.store import TEXT_COLUMNS
from speechbrain_lmaczs.lmaczs.decoder import MaskDecoder
from speechbrain_lmaczs.lmaczs.domains import MelMasking, STFTMasking
from speechbrain_lmaczs.lmaczs.pretrained import TrainedLMACZS

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "samples"
EVAL_YAMLS = [
    ROOT / "recipes" / "ESC50" / "interpret" / "hparams" / "eval.yaml",
    ROOT / "recipes" / "UrbanSound8k" / "interpret" / "hparams" / "eval.yaml",
]

# The 5 bundled ESC-50 clips: 3 classes, so batches of 2 end with a partial batch.
CLIPS = {
    "1-100032-A-0": "dog",
    "2-100648-A-43": "car_horn",
    "3-103051-C-19": "thunderstorm",
    "4-156993-A-19": "thunderstorm",
    "5-156999-C-19": "thunderstorm",
}
CLASS_IDS = {"dog": 0, "thunderstorm": 19, "car_horn": 43}
#: the real factory, before any test patches it
MAKE_INTERPRETER = evaluation.make_interpreter


class SimulatedCrash(RuntimeError):
    """Stands for a kill in the middle of a (method, condition) pair."""


@pytest.fixture(scope="module")
def manifest():
    return {
        clip_id: {
            "wav": str(SAMPLES / "ESC50" / "audio" / f"{clip_id}.wav"),
            "class_string": label,
            "classID": CLASS_IDS[label],
        }
        for clip_id, label in CLIPS.items()
    }


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """Tiny msclap CLAP + an untrained decoder + Mel masking: the same objects load_trained returns."""
    from speechbrain_lmaczs.clap import load_clap

    clap = load_clap("msclap", "tiny-random", savedir=str(tmp_path_factory.mktemp("eval_clap")))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        decoder = MaskDecoder(clap.hidden_channels, clap.joint_dim, width=16, n_final_upsamplings=3)
    return TrainedLMACZS(clap, decoder, MelMasking(clap.frontend)).eval()


#: clips of the quick runs: a full batch of 2 and a partial one
N_QUICK = 3


def fast_settings(**changes):
    """Two cheap methods, one condition, 3 clips in batches of 2 (the tiny CNN14 still sees 690 x 64 inputs)."""
    options = {"methods": ("gradcam", "lmaczs"), "conditions": ("clean",), "batch_size": 2, "max_clips": N_QUICK}
    options.update(changes)
    return EvalSettings(**options)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fin:
        return list(csv.DictReader(fin))


def assert_numeric(rows, columns):
    for row in rows:
        for column in columns:
            assert math.isfinite(float(row[column])), (column, row)


# ------------------------------------------------------------------------------------------------ result files
@pytest.fixture(scope="module")
def first_run(model, manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_run")
    settings = fast_settings(conditions=("clean", "speech"))
    rows = evaluate(model, manifest, str(out), settings, speech_manifest=str(SAMPLES / "speech"))
    return out, rows


def test_results_have_a_method_row_and_a_reference_row_per_pair(first_run):
    out, returned = first_run
    rows = read_csv(out / "results.csv")
    assert tuple(rows[0]) == RESULT_COLUMNS
    keys = [(r["method"], r["condition"], r["mask"]) for r in rows]
    assert sorted(keys) == sorted(
        (m, c, k) for m in ("gradcam", "lmaczs") for c in ("clean", "speech") for k in ("method", "constant_mean")
    )
    assert_numeric(rows, [c for c in RESULT_COLUMNS if c not in TEXT_COLUMNS + (SELECTIVITY,)])
    assert all(math.isnan(float(r[SELECTIVITY])) for r in rows)  # no mixture here
    assert {r["domain"] for r in rows} == {"MelMasking(mask_on=log_mel)"}
    assert all(int(r["n_clips"]) == N_QUICK and int(r["n_nonfinite"]) == 0 for r in rows)
    assert all(float(r["seconds_per_clip"]) > 0 and float(r["forward_ratio"]) > 0 for r in rows)
    assert [(r["method"], r["condition"], r["mask"]) for r in returned] == keys


def test_per_clip_rows_cover_every_clip_of_every_pair_once(first_run):
    out, _ = first_run
    rows = read_csv(out / "per_clip.csv")
    assert tuple(rows[0]) == PER_CLIP_COLUMNS
    keys = [(r["method"], r["condition"], r["mask"], r["id"]) for r in rows]
    assert len(keys) == len(set(keys)) == N_QUICK * 8
    ids = {r["id"] for r in rows}
    assert len(ids) == N_QUICK and ids <= set(CLIPS)
    for pair in {(r["method"], r["condition"], r["mask"]) for r in rows}:
        assert {r["id"] for r in rows if (r["method"], r["condition"], r["mask"]) == pair} == ids
    assert all(r["label"] == CLIPS[r["id"]] for r in rows)
    assert all(r["target"] == r["predicted"] for r in rows)  # default target: the zero-shot decision
    assert_numeric(rows, VALUE_NAMES)


def test_means_in_results_are_the_means_of_the_per_clip_rows(first_run):
    out, _ = first_run
    per_clip = read_csv(out / "per_clip.csv")
    for row in read_csv(out / "results.csv"):
        key = (row["method"], row["condition"], row["mask"])
        mine = [r for r in per_clip if (r["method"], r["condition"], r["mask"]) == key]
        for name in VALUE_NAMES:
            mean = sum(float(r[name]) for r in mine) / len(mine)
            assert float(row[name]) == pytest.approx(mean, rel=1e-6, abs=1e-9), name


def test_every_method_sees_the_same_input_in_a_condition(first_run):
    out, _ = first_run
    per_clip = read_csv(out / "per_clip.csv")
    for condition in ("clean", "speech"):
        decisions = {}
        for r in per_clip:
            if r["condition"] == condition:
                decisions.setdefault(r["method"], {})[r["id"]] = r["predicted"]
        assert decisions["gradcam"] == decisions["lmaczs"]
    results = read_csv(out / "results.csv")
    for condition in ("clean", "speech"):
        accuracies = {r["accuracy"] for r in results if r["condition"] == condition}
        assert len(accuracies) == 1


def test_markdown_states_table_ad_variant_and_normalisations(first_run):
    out, _ = first_run
    text = (out / "results.md").read_text()
    assert "| method | AI | AD | AG | FF | Fid-In | SPS | COMP | MM | PS |" in text
    assert "- Masking domain: `MelMasking(mask_on=log_mel)`" in text
    assert "| *GradCAM const.* |" in text and "| *LMAC-ZS const.* |" in text
    for condition in ("clean", "speech"):
        assert f"*{condition} (accuracy" in text
    assert "GradCAM" in text and "LMAC-ZS" in text
    assert "AD: the paper's formula" in text
    assert "relu -> upsample(nearest)" in text  # GradCAM's normalisation
    assert "none: the decoder's sigmoid output is the mask" in text  # LMAC-ZS's
    assert "seconds per clip" in text


def test_legacy_ad_is_said_in_the_table_and_changes_ad(model, manifest, tmp_path):
    paper = evaluate(model, manifest, str(tmp_path / "paper"), fast_settings(methods=("lmaczs",)))[0]
    settings = fast_settings(methods=("lmaczs",), legacy_double_softmax=True)
    legacy = evaluate(model, manifest, str(tmp_path / "legacy"), settings)[0]
    assert "legacy variant" in (tmp_path / "legacy" / "results.md").read_text()
    assert legacy["AI"] == paper["AI"] and legacy["MM"] == paper["MM"]
    # The second softmax flattens p and o towards uniform, so any drop shrinks.
    assert legacy["AD"] <= paper["AD"]
    if paper["AD"] > 0:
        assert legacy["AD"] < paper["AD"]


def test_max_clips_and_max_batches_limit_the_clips(model, manifest, tmp_path):
    rows = evaluate(model, manifest, str(tmp_path / "a"), fast_settings(methods=("gradcam",)))
    assert {r["n_clips"] for r in rows} == {N_QUICK}
    assert len({r["id"] for r in read_csv(tmp_path / "a" / "per_clip.csv")}) == N_QUICK
    rows = evaluate(model, manifest, str(tmp_path / "b"), fast_settings(methods=("gradcam",), max_batches=1))
    assert {r["n_clips"] for r in rows} == {2}
    assert len(read_csv(tmp_path / "b" / "per_clip.csv")) == 2 * 2  # the method's masks and the reference


def test_a_fixed_prompt_is_explained_for_every_clip(model, manifest, tmp_path, first_run):
    prompt = "a dog barks"
    settings = fast_settings(methods=("gradcam",), target_prompt=prompt)
    rows = evaluate(model, manifest, str(tmp_path), settings)
    per_clip = read_csv(tmp_path / "per_clip.csv")
    assert {r["target"] for r in per_clip} == {prompt}
    # The accuracy stays over the class prompts: the added prompt never counts as a decision.
    default = [r for r in first_run[1] if (r["method"], r["condition"]) == ("gradcam", "clean")][0]
    assert rows[0]["accuracy"] == default["accuracy"]
    assert f"the fixed prompt '{prompt}'" in (tmp_path / "results.md").read_text()


def test_stft_masking_checkpoints_are_evaluated_on_the_stft(model, manifest, tmp_path):
    """Masks live on the 16 kHz STFT grid of an STFT-masking checkpoint, for every method, sanity checks included."""
    domain = STFTMasking(model.clap.frontend)
    stft_model = TrainedLMACZS(model.clap, model.decoder, domain).eval()
    settings = fast_settings(
        methods=("ig", "lmaczs"),
        interpreter_options={"ig": {"n_steps": 2}},
        max_batches=1,
        sanity_randomisation=True,
        sanity_methods=("lmaczs",),
        sanity_clips=1,
    )
    rows = evaluate(stft_model, manifest, str(tmp_path), settings)
    assert [r["n_clips"] for r in rows] == [2, 2, 2, 2]
    assert "`STFTMasking`" in (tmp_path / "results.md").read_text()
    assert len(read_csv(tmp_path / "sanity_randomisation.csv")) == 6


# ------------------------------------------------------------------------------------------------ resume
def spy_on_pairs(monkeypatch, fail_method=None, fail_at_call=None):
    """Record the (method, condition) pairs evaluated; optionally make a method fail at its n-th explain call."""
    evaluated = []
    real_pair = evaluation.evaluate_pair

    def record(setup, method, condition, *args, **kwargs):
        evaluated.append((method, condition))
        return real_pair(setup, method, condition, *args, **kwargs)

    def build(method, classifier, model, options=None):
        interpreter = MAKE_INTERPRETER(method, classifier, model, options)
        if method == fail_method:
            explain, calls = interpreter.explain, []

            def explain_then_fail(inputs, target=None):
                calls.append(1)
                if len(calls) == fail_at_call:
                    raise SimulatedCrash("simulated interruption")
                return explain(inputs, target)

            interpreter.explain = explain_then_fail
        return interpreter

    monkeypatch.setattr(evaluation.run, "evaluate_pair", record)
    monkeypatch.setattr(evaluation.setup, "make_interpreter", build)
    return evaluated


def test_restart_skips_finished_pairs(model, manifest, tmp_path, monkeypatch):
    evaluate(model, manifest, str(tmp_path), fast_settings(methods=("gradcam",)))
    before = read_csv(tmp_path / "results.csv")
    evaluated = spy_on_pairs(monkeypatch)
    evaluate(model, manifest, str(tmp_path), fast_settings(methods=("gradcam", "lmaczs")))
    assert evaluated == [("lmaczs", "clean")]
    after = read_csv(tmp_path / "results.csv")
    assert [r for r in after if r["method"] == "gradcam"] == before
    assert len(read_csv(tmp_path / "per_clip.csv")) == 2 * 2 * N_QUICK


def test_interrupted_pair_is_redone_without_duplicate_rows(model, manifest, tmp_path, monkeypatch):
    settings = fast_settings(conditions=("clean", "white_noise"))
    spy_on_pairs(monkeypatch, fail_method="lmaczs", fail_at_call=2)
    with pytest.raises(SimulatedCrash):
        evaluate(model, manifest, str(tmp_path), settings)
    # gradcam/clean finished; lmaczs/clean wrote its first batch, then stopped.
    assert {(r["method"], r["condition"]) for r in read_csv(tmp_path / "results.csv")} == {("gradcam", "clean")}
    per_clip = read_csv(tmp_path / "per_clip.csv")
    assert sum(r["method"] == "lmaczs" for r in per_clip) == 2 * 2
    # A crash in the middle of a write leaves a cut line behind.
    with open(tmp_path / "per_clip.csv", "a", encoding="utf-8") as fout:
        fout.write("lmaczs,clean,3-103051-C-19,thunder")

    evaluated = spy_on_pairs(monkeypatch)
    evaluate(model, manifest, str(tmp_path), settings)
    assert evaluated == [("lmaczs", "clean"), ("gradcam", "white_noise"), ("lmaczs", "white_noise")]
    per_clip = read_csv(tmp_path / "per_clip.csv")
    keys = [(r["method"], r["condition"], r["mask"], r["id"]) for r in per_clip]
    assert len(keys) == len(set(keys)) == N_QUICK * 8
    assert_numeric(per_clip, VALUE_NAMES)
    assert len(read_csv(tmp_path / "results.csv")) == 8


@pytest.mark.parametrize(
    "changes, changed",
    [({"snr_db": 0.0}, "snr_db"), ({"template": "a recording of {label}"}, "data"), ({"max_clips": 2}, "data")],
)
def test_restart_with_other_settings_is_refused(model, manifest, tmp_path, changes, changed):
    evaluate(model, manifest, str(tmp_path), fast_settings(methods=("gradcam",), max_batches=1))
    template = changes.pop("template", "this is the sound of {label}")
    settings = fast_settings(methods=("gradcam",), max_batches=1, **changes)
    with pytest.raises(ValueError, match=rf"other settings \(changed: \[.*'{changed}'.*\]\)"):
        evaluate(model, manifest, str(tmp_path), settings, template=template)


def test_results_without_state_are_not_trusted(model, manifest, tmp_path):
    evaluate(model, manifest, str(tmp_path), fast_settings(methods=("gradcam",), max_batches=1))
    (tmp_path / "eval_state.json").unlink()
    with pytest.raises(ValueError, match="settings are unknown"):
        evaluate(model, manifest, str(tmp_path), fast_settings(methods=("gradcam",), max_batches=1))


# ------------------------------------------------------------------------------------------------ sanity checks
class SimilarityMask:
    """A fake interpreter whose mask mean is an affine function of the audio-prompt cosine."""

    normalization = "test: (cosine + 1) / 2 everywhere"

    def __init__(self, classifier):
        self.classifier = classifier

    @torch.no_grad()
    def explain(self, inputs, target):
        cosines = self.classifier.embed(inputs) @ self.classifier.text_embeddings.T
        value = (cosines.gather(1, target[:, None]) + 1) / 2
        return value[:, :, None].expand(-1, *inputs.shape[1:]).clone()


class InputOnlyMask:
    """A fake interpreter that ignores the model: its mask depends on the input only."""

    normalization = "test: min-max of the input"

    def __init__(self, classifier):
        self.classifier = classifier

    def explain(self, inputs, target):
        low = inputs.amin(dim=(1, 2), keepdim=True)
        high = inputs.amax(dim=(1, 2), keepdim=True)
        return (inputs - low) / (high - low)


def test_sanity_checks_are_off_by_default(first_run):
    out, _ = first_run
    assert not list(out.glob("sanity_*"))


def test_similarity_check_measures_the_correlation(model, manifest, tmp_path, monkeypatch):
    monkeypatch.setattr(
        evaluation.setup,
        "make_interpreter",
        lambda m, c, mod, o=None: SimilarityMask(c) if m == "gradcam" else MAKE_INTERPRETER(m, c, mod, o),
    )
    # No (method, condition) pair: only the sanity check runs.
    settings = fast_settings(
        methods=(), sanity_similarity=True, sanity_methods=("gradcam", "lmaczs"), sanity_clips=3, sanity_prompts=2
    )
    evaluate(model, manifest, str(tmp_path), settings)
    summary = {r["method"]: r for r in read_csv(tmp_path / "sanity_similarity.csv")}
    assert set(summary) == {"gradcam", "lmaczs"}
    assert float(summary["gradcam"]["pearson_r"]) == pytest.approx(1.0, abs=1e-6)
    assert -1.0 <= float(summary["lmaczs"]["pearson_r"]) <= 1.0
    assert all(int(r["n_points"]) == 3 * 2 for r in summary.values())
    points = read_csv(tmp_path / "sanity_similarity_points.csv")
    assert len(points) == 2 * 3 * 2
    # Each clip is explained for its predicted class and for another one.
    for clip_id in {p["id"] for p in points}:
        assert len({p["prompt"] for p in points if p["id"] == clip_id and p["method"] == "lmaczs"}) == 2
    assert (tmp_path / "sanity_similarity.png").stat().st_size > 0
    assert not (tmp_path / "sanity_randomisation.csv").exists()
    assert "mask mean vs audio-prompt similarity" in (tmp_path / "results.md").read_text()


def test_randomisation_check_tells_model_blind_maps_from_model_dependent_ones(model, manifest, tmp_path, monkeypatch):
    monkeypatch.setattr(
        evaluation.setup,
        "make_interpreter",
        lambda m, c, mod, o=None: InputOnlyMask(c) if m == "ig" else MAKE_INTERPRETER(m, c, mod, o),
    )
    settings = fast_settings(methods=(), sanity_randomisation=True, sanity_methods=("ig", "gradcam"), sanity_clips=2)
    evaluate(model, manifest, str(tmp_path), settings)
    rows = read_csv(tmp_path / "sanity_randomisation.csv")
    blocks = [f"conv_block{i}" for i in range(6, 0, -1)]
    assert [r["blocks"] for r in rows if r["method"] == "gradcam"] == blocks
    blind = [float(r["ssim"]) for r in rows if r["method"] == "ig"]
    assert blind == pytest.approx([1.0] * 6)
    # GradCAM hooks the output of conv_block6: re-initialising that block changes its map.
    assert float(next(r["ssim"] for r in rows if r["method"] == "gradcam")) < 0.99
    assert all(int(r["n_clips"]) == 2 for r in rows)
    assert (tmp_path / "sanity_randomisation.png").stat().st_size > 0
    assert not (tmp_path / "sanity_similarity.csv").exists()
    assert "| IG | 1.000 | 1.000 |" in (tmp_path / "results.md").read_text()


def test_randomisation_blocks_exist_in_both_backends(tiny_clap):
    classifier = ZeroShotClassifier(tiny_clap, ["this is the sound of dog", "this is the sound of rain"])
    blocks = randomization_blocks(tiny_clap)
    assert evaluation.randomisation_blocks is randomization_blocks  # the former name still works
    modules = dict(classifier.named_modules())
    assert all(name in modules for name in blocks)
    assert len(blocks) == {"msclap": 6, "laion": 4}[tiny_clap.name]
    # Top first: the block closest to the embedding comes first.
    assert blocks[0].endswith({"msclap": "conv_block6", "laion": "layers.3"}[tiny_clap.name])


# ------------------------------------------------------------------------------------------------ settings and data
@pytest.mark.parametrize(
    "changes, error",
    [
        ({"methods": ("gradcam", "lime")}, "Unknown methods"),
        ({"methods": "gradcam"}, "not one string"),
        ({"conditions": ("clean", "reverb")}, "Unknown conditions"),
        ({"methods": ("ig", "ig")}, "twice"),
        ({"batch_size": 0}, "batch_size must be a positive int"),
        ({"interpreter_options": {"lmaczs": {"width": 3}}}, "lmaczs takes no interpreter options"),
        ({"interpreter_options": {"igg": {}}}, "unknown methods"),
        ({"target_prompt": " "}, "target_prompt"),
    ],
)
def test_settings_reject_mistakes_with_a_clear_message(changes, error):
    with pytest.raises((ValueError, TypeError), match=error):
        EvalSettings(**changes)


def test_speech_condition_without_speech_fails_before_any_clip(model, manifest, tmp_path):
    with pytest.raises(ValueError, match="speech condition needs speech recordings"):
        evaluate(model, manifest, str(tmp_path), fast_settings(conditions=("clean", "speech")))
    assert not (tmp_path / "results.csv").exists()


def test_unknown_interpreter_option_fails_before_any_clip(model, manifest, tmp_path):
    settings = fast_settings(methods=("gradcam", "ig"), interpreter_options={"ig": {"steps": 3}})
    with pytest.raises(TypeError, match="Unknown option"):
        evaluate(model, manifest, str(tmp_path), settings)
    assert not (tmp_path / "results.csv").exists()  # gradcam did not run first


def test_methods_and_their_construction_come_from_the_interpreter_registry(model):
    from speechbrain_lmaczs.interpreters import INTERPRETERS, GradCAM, LMACZSInterpreter

    assert METHODS == tuple(INTERPRETERS)
    assert evaluation.DISPLAY_NAMES == {name: cls.display_name for name, cls in INTERPRETERS.items()}
    classifier = model.classifier(["this is the sound of dog", "this is the sound of rain"])
    lmaczs = MAKE_INTERPRETER("lmaczs", classifier, model)
    assert isinstance(lmaczs, LMACZSInterpreter) and lmaczs.decoder is model.decoder and lmaczs.domain is model.domain
    assert isinstance(MAKE_INTERPRETER("gradcam", classifier, model, {"upsample_mode": "bilinear"}), GradCAM)
    with pytest.raises(ValueError, match="lmaczs takes no options"):
        MAKE_INTERPRETER("lmaczs", classifier, model, {"width": 3})


def test_every_setting_but_the_debug_limit_is_one_yaml_key(tmp_path):
    from speechbrain_lmaczs.evaluation.settings import yaml_fields

    names = [field.name for field in yaml_fields()]
    assert len(names) == 15 and "max_batches" not in names
    hparams = hparams_for(EVAL_YAMLS[0], tmp_path, snr_db=7.5, sanity_clips=2)
    assert all(name in hparams for name in names)
    settings = EvalSettings.from_hparams(hparams, max_batches=3)
    assert (settings.snr_db, settings.sanity_clips, settings.max_batches) == (7.5, 2, 3)


def hparams_for(yaml_path, tmp_path, **overrides):
    values = {"data_folder": str(SAMPLES / "ESC50"), "checkpoint": str(tmp_path), "output_folder": str(tmp_path)}
    values.update(overrides)
    with open(yaml_path, encoding="utf-8") as fin:
        return load_hyperpyyaml(fin, values)


@pytest.mark.parametrize("yaml_path", EVAL_YAMLS, ids=lambda p: p.parts[-4])
def test_yaml_defaults_are_the_paper_protocol(yaml_path, tmp_path):
    hparams = hparams_for(yaml_path, tmp_path)
    settings = EvalSettings.from_hparams(hparams)
    assert settings.methods == METHODS and settings.conditions == ("clean", "mixture", "white_noise", "speech")
    assert settings.snr_db == 3.0 and settings.target_prompt is None and not settings.legacy_double_softmax
    assert settings.options("ig")["n_steps"] == 50 and settings.options("smoothgrad")["n_samples"] == 50
    assert settings.options("gscorecam")["top_fraction"] == 0.1
    assert not settings.sanity_similarity and not settings.sanity_randomisation
    # Command-line overrides of the flat keys reach the interpreters.
    hparams = hparams_for(yaml_path, tmp_path, ig_n_steps=4, sanity_similarity=True)
    settings = EvalSettings.from_hparams(hparams)
    assert settings.options("ig")["n_steps"] == 4 and settings.sanity_similarity


def test_data_prep_uses_the_speech_folder_or_ljspeech(tmp_path):
    yaml_path = EVAL_YAMLS[0]
    hparams = hparams_for(yaml_path, tmp_path, speech_folder=str(SAMPLES / "speech"))
    manifests = prepare_evaluation_data(hparams)
    assert Path(manifests["eval"]).is_file() and Path(manifests["speech"]).is_file()
    assert len(read_manifest(manifests["speech"])) == 5
    assert prepare_evaluation_data(hparams_for(yaml_path, tmp_path, conditions=["clean"]))["speech"] is None
    # Without a speech folder the LJSpeech folder is used: one that holds something else is refused (no download).
    (tmp_path / "lj").mkdir()
    (tmp_path / "lj" / "notes.txt").write_text("not LJSpeech")
    with pytest.raises(MissingDataError, match="LJSpeech"):
        prepare_evaluation_data(hparams_for(yaml_path, tmp_path, ljspeech_folder=str(tmp_path / "lj")))
