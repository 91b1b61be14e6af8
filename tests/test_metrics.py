"""Faithfulness metrics: hand-computed values, edge cases, batch/clip consistency and the streaming accumulator."""

import csv
import io
import math

import pytest
import torch

from speechbrain_lmaczs.metrics import (
    METRIC_NAMES,
    MetricAccumulator,
    average_drop,
    average_gain,
    average_increase,
    complexity,
    faithfulness,
    faithfulness_metrics,
    input_fidelity,
    mask_mean,
    predicted_class,
    sparseness,
    zero_shot_accuracy,
)


def _t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def _random_case(batch=6, n_classes=5, time=7, freq=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    p = torch.softmax(3 * torch.randn(batch, n_classes, generator=gen), dim=-1)
    o = torch.softmax(3 * torch.randn(batch, n_classes, generator=gen), dim=-1)
    q = torch.softmax(3 * torch.randn(batch, n_classes, generator=gen), dim=-1)
    masks = torch.rand(batch, time, freq, generator=gen)
    return p, o, q, masks


# --- probability metrics, hand-computed ---------------------------------------------------------------------------


def test_brief_example_increase():
    p, o = _t([[0.6, 0.4]]), _t([[0.8, 0.2]])
    assert average_increase(p, o).tolist() == [100.0]
    assert average_drop(p, o).tolist() == [0.0]
    # max(0, 0.8 - 0.6) / (1 - 0.6) = 0.5
    assert average_gain(p, o).item() == pytest.approx(50.0)


def test_drop_case():
    p, o = _t([[0.6, 0.4]]), _t([[0.45, 0.55]])
    assert average_increase(p, o).tolist() == [0.0]
    # (0.6 - 0.45) / 0.6 = 0.25
    assert average_drop(p, o).item() == pytest.approx(25.0)
    assert average_gain(p, o).tolist() == [0.0]
    assert input_fidelity(p, o).tolist() == [0.0]


def test_equal_probability_is_neither_increase_nor_drop():
    p = _t([[0.5, 0.3, 0.2]])
    assert average_increase(p, p).tolist() == [0.0]
    assert average_drop(p, p).tolist() == [0.0]
    assert average_gain(p, p).tolist() == [0.0]
    assert input_fidelity(p, p).tolist() == [1.0]


def test_three_classes_with_target():
    p = _t([[0.5, 0.3, 0.2]])
    o = _t([[0.2, 0.2, 0.6]])
    q = _t([[0.1, 0.6, 0.3]])
    target = torch.tensor([2])
    # explained class 2: p_c = 0.2, o_c = 0.6, q_c = 0.3
    assert average_increase(p, o, target).tolist() == [100.0]
    assert average_drop(p, o, target).tolist() == [0.0]
    assert average_gain(p, o, target).item() == pytest.approx(100 * 0.4 / 0.8)
    assert faithfulness(p, q, target).item() == pytest.approx(-0.1)
    # default target: argmax p = class 0
    assert average_drop(p, o).item() == pytest.approx(100 * 0.3 / 0.5)
    assert faithfulness(p, q).item() == pytest.approx(0.4)
    # Fid-In compares decisions (argmax o = 2 vs argmax p = 0), whatever the target
    assert input_fidelity(p, o).tolist() == [0.0]


def test_faithfulness_hand_value():
    p, q = _t([[0.7, 0.2, 0.1]]), _t([[0.1, 0.2, 0.7]])
    assert faithfulness(p, q).item() == pytest.approx(0.6)


def test_gain_is_zero_when_original_is_certain():
    p = _t([[1.0, 0.0], [0.0, 1.0]])
    o = _t([[1.0, 0.0], [0.3, 0.7]])
    gain = average_gain(p, o)
    assert gain.tolist() == [0.0, 0.0]
    assert torch.isfinite(gain).all()


def test_drop_is_zero_when_target_probability_is_zero():
    p, o = _t([[1.0, 0.0]]), _t([[0.4, 0.6]])
    drop = average_drop(p, o, target=torch.tensor([1]))
    assert drop.tolist() == [0.0]


def test_gain_is_capped_by_rounding():
    p = torch.tensor([[1 - 1e-7, 1e-7]], dtype=torch.float32)
    o = torch.tensor([[1.0, 0.0]], dtype=torch.float32)
    gain = average_gain(p, o)
    assert 0.0 <= gain.item() <= 100.0


def test_legacy_double_softmax_changes_drop_as_specified():
    p, o = _t([[0.8, 0.2]]), _t([[0.4, 0.6]])
    paper = average_drop(p, o)
    legacy = average_drop(p, o, legacy_double_softmax=True)
    assert paper.item() == pytest.approx(50.0)
    # softmax([0.8, 0.2])[0] = 1 / (1 + e^-0.6); softmax([0.4, 0.6])[0] = 1 / (1 + e^0.2)
    p_c = 1 / (1 + math.exp(-0.6))
    o_c = 1 / (1 + math.exp(0.2))
    assert legacy.item() == pytest.approx(100 * (p_c - o_c) / p_c)
    assert legacy.item() < paper.item()


def test_predicted_class_and_zero_shot_accuracy():
    p = _t([[0.1, 0.9], [0.7, 0.3], [0.5, 0.5]])
    assert predicted_class(p).tolist() == [1, 0, 0]
    assert zero_shot_accuracy(p, torch.tensor([1, 1, 0])).tolist() == [100.0, 0.0, 100.0]


# --- mask metrics, hand-computed ----------------------------------------------------------------------------------


def test_gini_of_known_vector():
    masks = torch.tensor([[[0.0, 0.0], [1.0, 3.0]]], dtype=torch.float64)
    # a = [e, e, 1+e, 3+e], n = 4, weights 2k-n-1 = [-3, -1, 1, 3] -> (1 + 9 + 0e) / (4 * (4 + 4e)) ~ 10/16
    eps = 1e-7
    a = [eps, eps, 1 + eps, 3 + eps]
    expected = sum((2 * k - 4 - 1) * v for k, v in enumerate(a, start=1)) / (4 * sum(a))
    assert sparseness(masks).item() == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(10 / 16, abs=1e-6)


def test_gini_ignores_sign_and_order():
    masks = torch.tensor([[[3.0, 0.0], [0.0, 1.0]], [[0.0, -1.0], [-3.0, 0.0]]], dtype=torch.float64)
    values = sparseness(masks)
    assert values[0].item() == pytest.approx(values[1].item(), abs=1e-12)
    assert values[0].item() == pytest.approx(10 / 16, abs=1e-6)


def test_gini_of_constant_and_all_zero_masks_is_zero():
    masks = torch.stack([torch.full((5, 4), 0.7), torch.zeros(5, 4)])
    assert sparseness(masks).tolist() == pytest.approx([0.0, 0.0], abs=1e-6)


def test_gini_of_one_hot_mask():
    masks = torch.zeros(1, 10, 10, dtype=torch.float64)
    masks[0, 3, 4] = 1.0
    assert sparseness(masks).item() == pytest.approx(1 - 1 / 100, abs=1e-5)


def test_entropy_of_uniform_mask_is_log_n():
    masks = torch.full((2, 6, 5), 0.3)
    assert complexity(masks).tolist() == pytest.approx([math.log(30)] * 2, abs=1e-6)


def test_entropy_hand_value_and_scale_invariance():
    masks = torch.tensor([[[1.0, 1.0], [2.0, 0.0]]], dtype=torch.float64)
    # distribution [1/4, 1/4, 1/2, 0]
    expected = -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))
    assert complexity(masks).item() == pytest.approx(expected, abs=1e-12)
    assert complexity(5 * masks).item() == pytest.approx(expected, abs=1e-12)
    assert complexity(-masks).item() == pytest.approx(expected, abs=1e-12)


def test_all_zero_mask_scores_like_a_constant_mask():
    masks = torch.zeros(1, 8, 4)
    comp = complexity(masks)
    assert torch.isfinite(comp).all()
    assert comp.item() == pytest.approx(math.log(32), abs=1e-6)
    assert mask_mean(masks).tolist() == [0.0]
    values = faithfulness_metrics(_t([[0.6, 0.4]]), _t([[0.6, 0.4]]), _t([[0.6, 0.4]]), masks)
    assert all(torch.isfinite(v).all() for v in values.values())


def test_mask_mean_hand_value():
    masks = torch.tensor([[[0.0, 1.0, 0.5], [0.5, 0.0, 1.0]]])
    assert mask_mean(masks).tolist() == pytest.approx([0.5])


def test_spread_mask_is_less_sparse_and_more_complex():
    gen = torch.Generator().manual_seed(1)
    peaked = torch.zeros(1, 10, 8)
    peaked[0, 2:4, 1:3] = 1.0
    spread = torch.rand(1, 10, 8, generator=gen) * 0.5 + 0.5
    assert sparseness(peaked) > sparseness(spread)
    assert complexity(peaked) < complexity(spread)


# --- the dict API, batch vs clip ------------------------------------------------------------------------------------


def test_faithfulness_metrics_names_and_hand_values():
    p, o, q = _t([[0.6, 0.4]]), _t([[0.8, 0.2]]), _t([[0.3, 0.7]])
    masks = torch.full((1, 4, 2), 0.25, dtype=torch.float64)
    values = faithfulness_metrics(p, o, q, masks)
    assert tuple(values) == METRIC_NAMES == ("AI", "AD", "AG", "FF", "Fid-In", "SPS", "COMP", "MM")
    expected = {"AI": 100, "AD": 0, "AG": 50, "FF": 0.3, "Fid-In": 1, "SPS": 0, "COMP": math.log(8), "MM": 0.25}
    for name, value in expected.items():
        assert values[name].shape == (1,)
        assert values[name].item() == pytest.approx(value, abs=1e-6), name


def test_batch_equals_single_clips():
    p, o, q, masks = _random_case()
    target = torch.tensor([0, 1, 2, 3, 4, 0])
    for tgt in (None, target):
        batched = faithfulness_metrics(p, o, q, masks, target=tgt)
        for i in range(p.shape[0]):
            one = slice(i, i + 1)
            single = faithfulness_metrics(p[one], o[one], q[one], masks[one], target=None if tgt is None else tgt[one])
            for name in METRIC_NAMES:
                assert single[name].item() == pytest.approx(batched[name][i].item(), abs=1e-6), name


def test_metric_ranges_on_random_inputs():
    p, o, q, masks = _random_case(batch=16, seed=3)
    values = faithfulness_metrics(p, o, q, masks)
    assert set(values["AI"].tolist()) <= {0.0, 100.0}
    assert ((values["AD"] >= 0) & (values["AD"] <= 100)).all()
    assert ((values["AG"] >= 0) & (values["AG"] <= 100)).all()
    assert ((values["FF"] >= -1) & (values["FF"] <= 1)).all()
    assert set(values["Fid-In"].tolist()) <= {0.0, 1.0}
    assert ((values["SPS"] >= 0) & (values["SPS"] < 1)).all()
    assert ((values["COMP"] >= 0) & (values["COMP"] <= math.log(7 * 4) + 1e-6)).all()
    # AI = 100 exactly where AD = 0 and o_c > p_c; an increase never comes with a drop
    assert (values["AD"][values["AI"] == 100] == 0).all()


def test_float32_output_dtype_and_device():
    p, o, q, masks = _random_case()
    values = faithfulness_metrics(p.float(), o.float(), q.float(), masks.float())
    assert all(v.dtype == torch.float32 for v in values.values())


# --- input validation and NaN propagation -------------------------------------------------------------------------


def test_logits_are_rejected():
    logits = _t([[2.0, -1.0]])
    with pytest.raises(ValueError, match="probabilities"):
        average_drop(logits, _t([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="sum to 1"):
        average_drop(_t([[0.5, 0.2]]), _t([[0.5, 0.5]]))


def test_bad_shapes_and_targets_are_rejected():
    p = _t([[0.6, 0.4]])
    with pytest.raises(ValueError, match="same prompts"):
        average_increase(p, _t([[0.2, 0.3, 0.5]]))
    with pytest.raises(ValueError, match="target indices"):
        average_increase(p, p, target=torch.tensor([2]))
    with pytest.raises(TypeError, match="integer"):
        average_increase(p, p, target=torch.tensor([0.0]))
    with pytest.raises(ValueError, match="batch, time, freq"):
        sparseness(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="clips"):
        faithfulness_metrics(p, p, p, torch.zeros(2, 3, 3))


def test_nan_inputs_give_nan_not_a_score():
    p = _t([[0.6, 0.4], [float("nan"), float("nan")]])
    o = _t([[0.8, 0.2], [0.5, 0.5]])
    masks = torch.rand(2, 3, 3)
    masks[1, 0, 0] = float("nan")
    values = faithfulness_metrics(p, o, o, masks)
    for name in METRIC_NAMES:
        assert torch.isfinite(values[name][0]), name
        assert not torch.isfinite(values[name][1]), name


def test_nan_is_not_hidden_by_division_guards():
    # p_c^ = 1 (AG guard) and p_c^ = 0 (AD guard) with a broken masked-in row must stay NaN
    p = _t([[1.0, 0.0]])
    o = _t([[float("nan"), float("nan")]])
    assert torch.isnan(average_gain(p, o)).all()
    assert torch.isnan(average_drop(p, o, target=torch.tensor([1]))).all()
    assert torch.isnan(average_increase(p, o)).all()


# --- accumulator ----------------------------------------------------------------------------------------------------


def test_accumulator_equals_mean_of_concatenated_values():
    acc = MetricAccumulator()
    chunks = []
    for seed, batch in enumerate((3, 1, 5, 2)):
        values = faithfulness_metrics(*_random_case(batch=batch, seed=seed))
        acc.update(values)
        chunks.append(values)
    summary = acc.summary()
    assert summary["n"] == 11 and summary["n_nonfinite"] == 0
    for name in METRIC_NAMES:
        expected = torch.cat([c[name] for c in chunks]).double().mean().item()
        assert summary[name] == pytest.approx(expected, rel=1e-9, abs=1e-9), name


def test_accumulator_counts_and_logs_nonfinite(caplog):
    acc = MetricAccumulator()
    acc.update({"AD": torch.tensor([10.0, float("nan")]), "MM": torch.tensor([0.2, 0.4])})
    acc.update({"AD": torch.tensor([float("inf"), 30.0]), "MM": torch.tensor([0.6, 0.8])})
    with caplog.at_level("WARNING"):
        summary = acc.summary()
    assert summary["AD"] == pytest.approx(20.0)
    assert summary["MM"] == pytest.approx(0.5)
    assert summary["n"] == 4 and summary["n_nonfinite"] == 2
    assert acc.nonfinite_counts == {"AD": 2, "MM": 0}
    assert "non-finite" in caplog.text


def test_accumulator_raise_policy_leaves_state_untouched():
    acc = MetricAccumulator(on_nonfinite="raise")
    acc.update({"FF": torch.tensor([0.5])})
    with pytest.raises(FloatingPointError, match="clips \\[1\\]"):
        acc.update({"FF": torch.tensor([0.1, float("nan")])})
    assert acc.summary() == {"FF": 0.5, "n": 1, "n_nonfinite": 0}


def test_accumulator_all_nonfinite_metric_is_nan_and_counted():
    acc = MetricAccumulator()
    acc.update({"COMP": torch.tensor([float("nan")]), "MM": torch.tensor([0.5])})
    summary = acc.summary()
    assert math.isnan(summary["COMP"]) and summary["n_nonfinite"] == 1


def test_accumulator_rejects_inconsistent_updates():
    with pytest.raises(ValueError, match="on_nonfinite"):
        MetricAccumulator(on_nonfinite="ignore")
    acc = MetricAccumulator(names=["AI", "AD"])
    with pytest.raises(KeyError):
        acc.update({"AI": torch.tensor([1.0])})
    with pytest.raises(ValueError, match="clips"):
        acc.update({"AI": torch.tensor([1.0]), "AD": torch.tensor([1.0, 2.0])})
    with pytest.raises(ValueError, match="before any clip"):
        acc.summary()


def test_accumulator_writes_per_clip_rows():
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["id", "label", *METRIC_NAMES])
    writer.writeheader()
    acc = MetricAccumulator(row_writer=writer)
    batches = [_random_case(batch=2, seed=0), _random_case(batch=3, seed=1)]
    expected_rows = []
    for b, case in enumerate(batches):
        values = faithfulness_metrics(*case)
        ids = [f"clip{b}_{i}" for i in range(case[0].shape[0])]
        acc.update(values, extra={"id": ids, "label": torch.arange(len(ids))})
        for i, clip_id in enumerate(ids):
            expected_rows.append((clip_id, {name: values[name][i].item() for name in METRIC_NAMES}))
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert [row["id"] for row in rows] == [clip_id for clip_id, _ in expected_rows]
    assert [row["label"] for row in rows] == ["0", "1", "0", "1", "2"]
    for row, (_, values) in zip(rows, expected_rows, strict=True):
        for name in METRIC_NAMES:
            assert float(row[name]) == pytest.approx(values[name], abs=1e-6)
    # the mean of the written column is the summary
    mean_ad = sum(float(row["AD"]) for row in rows) / len(rows)
    assert acc.summary()["AD"] == pytest.approx(mean_ad, abs=1e-6)


def test_accumulator_rejects_misaligned_extra_column():
    acc = MetricAccumulator(row_writer=csv.DictWriter(io.StringIO(), fieldnames=["id", "AI"]))
    with pytest.raises(ValueError, match="extra column"):
        acc.update({"AI": torch.tensor([0.0, 100.0])}, extra={"id": ["a"]})


def test_zero_shot_accuracy_through_accumulator():
    acc = MetricAccumulator()
    acc.update({"accuracy": zero_shot_accuracy(_t([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 0]))})
    acc.update({"accuracy": zero_shot_accuracy(_t([[0.3, 0.7]]), torch.tensor([1]))})
    assert acc.summary()["accuracy"] == pytest.approx(200 / 3)


# ---------------------------------------------------------------- localization against a known support


def test_localization_iou_hand_values_and_scale_invariance():
    from speechbrain_lmaczs.metrics import localization_iou

    support = torch.zeros(1, 4, 4, dtype=torch.bool)
    support[0, :2, :2] = True  # 4 bins
    perfect = support.float() * 0.3  # small values, but the top-4 are exactly the support
    assert localization_iou(perfect, support).tolist() == [1.0]
    assert localization_iou(perfect * 3, support).tolist() == [1.0]
    shifted = torch.zeros(1, 4, 4)
    shifted[0, 1:3, :2] = 1.0  # top-4 overlaps the support in 2 bins: IoU = 2 / 6
    assert localization_iou(shifted, support).item() == pytest.approx(1 / 3)
    assert torch.isnan(localization_iou(shifted, torch.zeros_like(support)))[0]


def test_pointing_game_and_shapes():
    from speechbrain_lmaczs.metrics import localization_metrics

    support = torch.zeros(2, 3, 3, dtype=torch.bool)
    support[:, 0, 0] = True
    masks = torch.rand(2, 3, 3) * 0.5
    masks[0, 0, 0] = 1.0
    masks[1, 2, 2] = 1.0
    values = localization_metrics(masks, support)
    assert values["pointing"].tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="supports"):
        localization_metrics(masks, support[:, :2])


def test_top_k_and_pointing_do_not_depend_on_the_order_of_ties():
    from speechbrain_lmaczs.metrics import localization_iou, pointing_game, top_k_membership

    # 2 x 3 grid, support = first row (3 bins). The mask has one bin at 0.8 and four tied at the maximum 1.0:
    # top-3 = three of the four tied bins, so each holds 3/4 of a place. Two tied bins are in the support.
    support = torch.tensor([[[True, True, True], [False, False, False]]])
    mask = torch.tensor([[[1.0, 1.0, 0.8], [1.0, 1.0, 0.0]]])
    member = top_k_membership(mask, [3])
    assert member.tolist() == [[[0.75, 0.75, 0.0], [0.75, 0.75, 0.0]]]
    # inter = sum min = 0.75 + 0.75 = 1.5; union = sum max = 1 + 1 + 1 + 0.75 + 0.75 = 4.5
    assert localization_iou(mask, support).item() == pytest.approx(1 / 3)
    # 2 of the 4 maxima are in the support
    assert pointing_game(mask, support).item() == pytest.approx(0.5)
    # moving the tied values around (same multiset of values inside and outside the support) changes nothing
    swapped = torch.tensor([[[0.8, 1.0, 1.0], [0.0, 1.0, 1.0]]])
    assert localization_iou(swapped, support).item() == pytest.approx(1 / 3)
    assert pointing_game(swapped, support).item() == pytest.approx(0.5)
    # a whole tie group inside the top-k counts fully (k = 3: the two tied 1.0 and the 0.8); the tie of three
    # zeros below the 0.8 gets nothing: inter 2, union 4
    two_tied = torch.tensor([[[1.0, 0.8, 0.0], [1.0, 0.0, 0.0]]])
    assert top_k_membership(two_tied, [3]).tolist() == [[[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]]
    assert localization_iou(two_tied, support).item() == pytest.approx(2 / 4)
    # k = 4 reaches the three tied zeros: one place left, 1/3 each
    assert top_k_membership(two_tied, [4]).tolist() == [[[1.0, 1.0, 1 / 3], [1.0, 1 / 3, 1 / 3]]]
    assert top_k_membership(two_tied, [0]).sum().item() == 0.0


def test_mass_in_support_and_average_precision_hand_values():
    from speechbrain_lmaczs.metrics import average_precision, localization_metrics, mass_in_support

    support = torch.tensor([[[True, False, True], [False, False, False]]])
    mask = torch.tensor([[[0.5, 0.25, 0.25], [0.0, 0.0, 0.0]]])
    # mass 1.0, of which 0.75 in the support
    assert mass_in_support(mask, support).item() == pytest.approx(0.75)
    # ranking: 0.5 (hit: P 1, recall 1/2), then the tie {0.25, 0.25} (1 hit of 2: P 2/3, recall 1), then zeros
    assert average_precision(mask, support).item() == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # perfect and constant masks: AP 1, and AP = mass share = the support's share of the grid (2 / 6)
    assert average_precision(support.float(), support).item() == pytest.approx(1.0)
    constant = torch.full((1, 2, 3), 0.7)
    assert average_precision(constant, support).item() == pytest.approx(2 / 6)
    assert mass_in_support(constant, support).item() == pytest.approx(2 / 6)
    assert mass_in_support(torch.zeros(1, 2, 3), support).item() == pytest.approx(2 / 6)
    # the tie's order does not matter: the hit of the tie placed first or last gives the same AP
    reordered = torch.tensor([[[0.5, 0.25, 0.0], [0.25, 0.0, 0.0]]])
    later_hit = torch.tensor([[[True, False, False], [True, False, False]]])
    earlier_hit = torch.tensor([[[True, True, False], [False, False, False]]])
    assert average_precision(reordered, later_hit).item() == average_precision(reordered, earlier_hit).item()
    values = localization_metrics(mask, torch.zeros_like(support))
    assert all(torch.isnan(values[k]).all() for k in ("IoU", "mass_in_support", "AP"))


def test_package_keeps_every_public_name_and_the_old_spellings():
    # metrics became a package: everything the single module exported still imports from it, and the British
    # spellings of the localization names are the same objects as the new ones.
    import speechbrain_lmaczs.metrics as metrics

    names = (
        "GINI_EPS METRIC_NAMES MetricAccumulator average_drop average_gain average_increase complexity faithfulness "
        "faithfulness_metrics input_fidelity mask_mean pointing_game predicted_class sparseness top_k_region "
        "zero_shot_accuracy"
    ).split()
    assert all(callable(getattr(metrics, name)) or name.isupper() for name in names)
    assert metrics.localisation_iou is metrics.localization_iou
    assert metrics.localisation_metrics is metrics.localization_metrics
    assert metrics.LOCALISATION_NAMES == metrics.LOCALIZATION_NAMES == ("IoU", "pointing", "mass_in_support", "AP")
