"""keras_convgru.metrics against their oracles: pysteps' categorical scores
and FSS, scikit-image's SSIM and PSNR.

Every comparison streams the data through `update_state` in three batches
of different sizes and compares `result()` with the oracle on all the data
at once (pysteps' `det_cat_fct` on the concatenated arrays, `fss_accum` on
every 2D field, skimage frame by frame). The data are uniform random
fields and rain-like fields: smooth Gaussian blobs of gamma-distributed
peak intensity advected across the frames, zero (no rain) over most of the
frame, with a forecast that moves them a little wrong.

Tolerances: the metrics accumulate in float32 and the oracles in float64.
The categorical counts are exact integers in float32 (below 2**24), so
the scores carry only the rounding of a few float32 operations: rtol 1e-5,
with atol 1e-6 for HSS and ETS, whose numerators (a d − b c, a − r) cancel
when a score is near 0. FSS's fractions are exact (window counts /
scale²), its sums of squares over every pixel are rounded (float32, any
summation order): rtol 1e-5, atol 1e-6. SSIM's local variances are
differences of window means (cancellation in float32, on top of the
convolution's summation order, which differs between TensorFlow's oneDNN
and Eigen paths, XLA and PyTorch): atol 1e-4 on a score in [-1, 1]. PSNR
is a logarithm of a float32 mean: rtol 1e-5 (1e-4 dB at 20 dB).

`pytest -s` prints the largest difference of each metric from its oracle
(the lines starting with "oracle-diff").
"""

import doctest
import inspect
import os

import keras
import numpy as np
import pytest
from pysteps.verification import det_cat_fct
from pysteps.verification.spatialscores import fss
from pysteps.verification.spatialscores import fss_accum
from pysteps.verification.spatialscores import fss_compute
from pysteps.verification.spatialscores import fss_init
from skimage.metrics import peak_signal_noise_ratio
from skimage.metrics import structural_similarity

from keras_convgru import metrics

CATEGORICAL = {
    "CSI": metrics.CriticalSuccessIndex,
    "POD": metrics.ProbabilityOfDetection,
    "FAR": metrics.FalseAlarmRatio,
    "HSS": metrics.HeidkeSkillScore,
    "ETS": metrics.EquitableThreatScore,
}
CATEGORICAL_ATOL = {
    "CSI": 0.0,
    "POD": 0.0,
    "FAR": 0.0,
    "HSS": 1e-6,
    "ETS": 1e-6,
}
PUBLIC = [getattr(metrics, name) for name in metrics.__all__]
# Three batches of different sizes, 3 frames of 32 x 32 each.
BATCHES = (1, 2, 3)
TIME, ROWS, COLS = 3, 32, 32


def _report(name, got, want):
    got, want = np.asarray(got, "float64"), np.asarray(want, "float64")
    diff = np.abs(got - want)
    rel = diff / np.maximum(np.abs(want), 1e-300)
    print(f"oracle-diff {name}: abs={diff.max():.3g} rel={rel.max():.3g}")


def _assert_matches(name, got, want, rtol, atol=0.0):
    _report(name, got, want)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)


def rain_fields(rng, batch, time=TIME, rows=ROWS, cols=COLS, channels=1):
    """Observed and forecast rain (mm/h): Gaussian blobs with gamma peaks,
    advected by a constant velocity; the forecast moves them at a slightly
    wrong velocity and intensity. Below 0.1 mm/h is no rain (0)."""
    r = np.arange(rows)[:, None]
    c = np.arange(cols)[None, :]
    observed = np.zeros((batch, time, rows, cols, channels))
    forecast = np.zeros_like(observed)
    for b in range(batch):
        for ch in range(channels):
            for _ in range(4):
                peak = rng.gamma(2.0, 4.0)
                width = rng.uniform(2.0, 5.0)
                r0, c0 = rng.uniform(0, rows), rng.uniform(0, cols)
                vr, vc = rng.uniform(-2.0, 2.0, 2)
                er, ec = rng.normal(0.0, 0.7, 2)
                gain = rng.lognormal(0.0, 0.3)
                for t in range(time):
                    for field, dr, dc, g in (
                        (observed, vr, vc, 1.0),
                        (forecast, vr + er, vc + ec, gain),
                    ):
                        d2 = (r - r0 - dr * t) ** 2 + (c - c0 - dc * t) ** 2
                        field[b, t, :, :, ch] += (
                            g * peak * np.exp(-d2 / (2 * width**2))
                        )
    observed[observed < 0.1] = 0.0
    forecast[forecast < 0.1] = 0.0
    return observed.astype("float32"), forecast.astype("float32")


def random_fields(rng, batch, time=TIME, rows=ROWS, cols=COLS, channels=1):
    shape = (batch, time, rows, cols, channels)
    observed = rng.uniform(size=shape)
    forecast = np.clip(observed + rng.normal(0.0, 0.2, shape), 0.0, 1.0)
    return observed.astype("float32"), forecast.astype("float32")


FIELDS = {"random": random_fields, "rain": rain_fields}


def streamed(kind, seed=0, channels=1):
    """[(y_true, y_pred)] for three batches of different sizes."""
    rng = np.random.default_rng(seed)
    return [FIELDS[kind](rng, n, channels=channels) for n in BATCHES]


def concatenated(batches):
    return (
        np.concatenate([t for t, _ in batches]),
        np.concatenate([p for _, p in batches]),
    )


def stream(metric, batches, **kwargs):
    for y_true, y_pred in batches:
        metric.update_state(y_true, y_pred, **kwargs)
    return float(metric.result())


def pysteps_score(score, y_true, y_pred, threshold):
    # pysteps counts an event as `value > thr`, the contract as `value >=
    # threshold`: on float32 data (exactly representable in float64) the
    # next float64 below the threshold makes pysteps' test ours.
    thr = np.nextafter(np.float64(np.float32(threshold)), -np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        return det_cat_fct(
            y_pred.astype("float64"), y_true.astype("float64"), thr, [score]
        )[score]


def pysteps_fss(y_true, y_pred, threshold, scale):
    state = fss_init(threshold, scale)
    fields_true = y_true.astype("float64").reshape(-1, *y_true.shape[-3:])
    fields_pred = y_pred.astype("float64").reshape(-1, *y_pred.shape[-3:])
    for frame_true, frame_pred in zip(fields_true, fields_pred):
        for ch in range(frame_true.shape[-1]):
            fss_accum(state, frame_pred[..., ch], frame_true[..., ch])
    return fss_compute(state)


def skimage_ssim(y_true, y_pred, max_val):
    frames_true = y_true.astype("float64").reshape(-1, *y_true.shape[-3:])
    frames_pred = y_pred.astype("float64").reshape(-1, *y_pred.shape[-3:])
    return np.mean(
        [
            structural_similarity(t, p, data_range=max_val, channel_axis=-1)
            for t, p in zip(frames_true, frames_pred)
        ]
    )


def skimage_psnr(y_true, y_pred, max_val):
    frames_true = y_true.astype("float64").reshape(-1, *y_true.shape[-3:])
    frames_pred = y_pred.astype("float64").reshape(-1, *y_pred.shape[-3:])
    with np.errstate(divide="ignore"):
        return np.mean(
            [
                peak_signal_noise_ratio(t, p, data_range=max_val)
                for t, p in zip(frames_true, frames_pred)
            ]
        )


# --- categorical scores ------------------------------------------------


@pytest.mark.parametrize(
    "kind,threshold",
    [("random", 0.5), ("random", 0.9), ("rain", 0.1), ("rain", 5.0)],
)
@pytest.mark.parametrize("score", CATEGORICAL)
def test_categorical_score_streamed_matches_pysteps(score, kind, threshold):
    batches = streamed(kind)
    got = stream(CATEGORICAL[score](threshold), batches)
    want = pysteps_score(score, *concatenated(batches), threshold)
    assert np.isfinite(want)
    _assert_matches(
        f"{score} {kind} thr={threshold}",
        got,
        want,
        rtol=1e-5,
        atol=CATEGORICAL_ATOL[score],
    )


@pytest.mark.parametrize("score", CATEGORICAL)
def test_a_value_equal_to_the_threshold_is_an_event(score):
    # Rain on a 0.5 mm/h grid: many values are exactly the threshold.
    batches = [
        (np.round(2 * t) / 2, np.round(2 * p) / 2) for t, p in streamed("rain")
    ]
    y_true, y_pred = concatenated(batches)
    assert (y_true == 1.0).sum() > 50 and (y_pred == 1.0).sum() > 50
    got = stream(CATEGORICAL[score](1.0), batches)
    want = pysteps_score(score, y_true, y_pred, 1.0)
    np.testing.assert_allclose(
        got, want, rtol=1e-5, atol=CATEGORICAL_ATOL[score]
    )
    # pysteps' own `> 1.0` leaves those values out.
    with np.errstate(divide="ignore", invalid="ignore"):
        strict = det_cat_fct(y_pred, y_true, 1.0, [score])[score]
    assert not np.isclose(got, strict, rtol=1e-4)


def test_categorical_scores_by_hand():
    y_true = np.array([0.0, 1.0, 2.0, 0.0, 3.0, 0.5])
    y_pred = np.array([1.0, 1.0, 0.0, 0.0, 4.0, 0.9])
    # threshold 1: a = 2 (1.0 and 3.0), b = 1, c = 1, d = 2, n = 6.
    a, b, c, d = 2.0, 1.0, 1.0, 2.0
    r = (a + b) * (a + c) / 6
    expected = {
        "CSI": a / (a + b + c),
        "POD": a / (a + c),
        "FAR": b / (a + b),
        "HSS": 2 * (a * d - b * c) / ((a + c) * (c + d) + (a + b) * (b + d)),
        "ETS": (a - r) / (a + b + c - r),
    }
    for score, cls in CATEGORICAL.items():
        metric = cls(1.0)
        metric.update_state(y_true, y_pred)
        np.testing.assert_allclose(
            float(metric.result()), expected[score], rtol=1e-6, err_msg=score
        )


@pytest.mark.parametrize("score", CATEGORICAL)
def test_no_events_at_all_is_nan_as_in_pysteps(score):
    batches = streamed("random")
    metric = CATEGORICAL[score](2.0)
    assert np.isnan(stream(metric, batches))
    assert np.isnan(pysteps_score(score, *concatenated(batches), 2.0))


@pytest.mark.parametrize("score", CATEGORICAL)
def test_before_any_batch_the_score_is_nan(score):
    assert np.isnan(float(CATEGORICAL[score](1.0).result()))


def test_ets_without_observed_events_is_the_formulas_zero():
    # Only false alarms and correct negatives: (a − r) / (a + b + c − r)
    # = 0 / b = 0. pysteps goes through POD = 0 / 0 and returns NaN.
    y_true = np.zeros((2, 4))
    y_pred = np.array([[2.0, 0, 0, 0], [0, 0, 0, 0]])
    metric = metrics.EquitableThreatScore(1.0)
    metric.update_state(y_true, y_pred)
    assert float(metric.result()) == 0.0
    assert np.isnan(pysteps_score("ETS", y_true, y_pred, 1.0))


@pytest.mark.parametrize("score", CATEGORICAL)
def test_sample_weight_counts_each_element_that_many_times(score):
    # Integer weights per sample = the samples repeated.
    batches = streamed("rain", seed=1)
    weights = [np.arange(len(t)) % 3 for t, _ in batches]  # 0, 1, 2, 0, ...
    metric = CATEGORICAL[score](1.0)
    for (y_true, y_pred), w in zip(batches, weights):
        metric.update_state(y_true, y_pred, sample_weight=w)
    y_true, y_pred = concatenated(batches)
    repeats = np.concatenate(weights)
    want = pysteps_score(
        score,
        np.repeat(y_true, repeats, axis=0),
        np.repeat(y_pred, repeats, axis=0),
        1.0,
    )
    np.testing.assert_allclose(
        float(metric.result()), want, rtol=1e-5, atol=CATEGORICAL_ATOL[score]
    )


def test_element_sample_weight_weighs_single_elements():
    y_true = np.array([[2.0, 2.0], [0.0, 0.0]])
    y_pred = np.array([[2.0, 0.0], [2.0, 0.0]])
    metric = metrics.CriticalSuccessIndex(1.0)
    # a = 3, c = 0 (weight 0), b = 1: CSI = 3 / 4.
    metric.update_state(y_true, y_pred, sample_weight=[[3.0, 0.0], [1.0, 5]])
    assert float(metric.result()) == pytest.approx(0.75)


# --- fractions skill score ---------------------------------------------


@pytest.mark.parametrize(
    "kind,threshold", [("random", 0.5), ("rain", 0.5), ("rain", 5.0)]
)
@pytest.mark.parametrize("scale", [1, 2, 3, 4, 9, 40])
def test_fss_streamed_matches_pysteps_accumulated(kind, threshold, scale):
    # Even scales check the window's placement (scipy's: scale // 2
    # before the pixel); 40 is wider than the 32 x 32 frame.
    batches = streamed(kind, channels=2)
    got = stream(metrics.FractionsSkillScore(threshold, scale), batches)
    want = pysteps_fss(*concatenated(batches), threshold, scale)
    assert np.isfinite(want)
    _assert_matches(
        f"FSS {kind} thr={threshold} scale={scale}",
        got,
        want,
        rtol=1e-5,
        atol=1e-6,
    )


def test_fss_equals_pysteps_fss_on_one_frame():
    y_true, y_pred = rain_fields(np.random.default_rng(3), 1, time=1)
    metric = metrics.FractionsSkillScore(1.0, 5)
    metric.update_state(y_true, y_pred)
    want = fss(y_pred[0, 0, ..., 0], y_true[0, 0, ..., 0], 1.0, 5)
    np.testing.assert_allclose(float(metric.result()), want, rtol=1e-5)


def test_fss_without_events_is_nan_as_in_pysteps():
    batches = streamed("random")
    assert np.isnan(stream(metrics.FractionsSkillScore(2.0, 3), batches))
    with np.errstate(divide="ignore", invalid="ignore"):
        assert np.isnan(pysteps_fss(*concatenated(batches), 2.0, 3))


def test_fss_non_finite_values_are_no_event_as_in_pysteps():
    y_true, y_pred = rain_fields(np.random.default_rng(4), 2)
    y_pred[0, 0, :4, :4, 0] = np.inf
    y_true[1, 2, 5:9, 5:9, 0] = np.nan
    metric = metrics.FractionsSkillScore(0.5, 3)
    metric.update_state(y_true, y_pred)
    want = pysteps_fss(y_true, y_pred, 0.5, 3)
    np.testing.assert_allclose(float(metric.result()), want, rtol=1e-5)


# --- SSIM and PSNR -----------------------------------------------------


@pytest.mark.parametrize(
    "kind,channels,max_val",
    [("random", 1, 1.0), ("random", 2, 1.0), ("rain", 1, 30.0)],
)
def test_ssim_streamed_matches_skimage(kind, channels, max_val):
    batches = streamed(kind, channels=channels)
    got = stream(metrics.StructuralSimilarity(max_val), batches)
    want = skimage_ssim(*concatenated(batches), max_val)
    _assert_matches(
        f"SSIM {kind} channels={channels} max_val={max_val}",
        got,
        want,
        rtol=0.0,
        atol=1e-4,
    )


def test_ssim_matches_skimage_on_an_offset_smooth_field():
    # A smooth field far from 0 (window variances tiny next to the mean):
    # float32's worst case for mean(x²) − μx².
    rng = np.random.default_rng(5)
    y_true, y_pred = rain_fields(rng, 2)
    y_true, y_pred = 100.0 + y_true, 100.0 + y_pred
    metric = metrics.StructuralSimilarity(max_val=130.0)
    metric.update_state(y_true, y_pred)
    want = skimage_ssim(y_true, y_pred, 130.0)
    _assert_matches("SSIM offset rain", metric.result(), want, 0.0, 1e-4)


@pytest.mark.parametrize(
    "kind,channels,max_val",
    [("random", 1, 1.0), ("random", 2, 1.0), ("rain", 1, 30.0)],
)
def test_psnr_streamed_matches_skimage(kind, channels, max_val):
    batches = streamed(kind, channels=channels)
    got = stream(metrics.PeakSignalToNoiseRatio(max_val), batches)
    want = skimage_psnr(*concatenated(batches), max_val)
    _assert_matches(
        f"PSNR {kind} channels={channels} max_val={max_val}",
        got,
        want,
        rtol=1e-5,
    )


@pytest.mark.parametrize(
    "cls", [metrics.StructuralSimilarity, metrics.PeakSignalToNoiseRatio]
)
def test_frame_metrics_read_every_leading_axis_as_frames(cls):
    # (batch, time, rows, cols, channels), (batch * time, rows, cols,
    # channels) and one frame (rows, cols, channels) at a time agree.
    y_true, y_pred = concatenated(streamed("random", channels=2))
    five_d = cls()
    five_d.update_state(y_true, y_pred)
    four_d = cls()
    four_d.update_state(
        y_true.reshape(-1, ROWS, COLS, 2), y_pred.reshape(-1, ROWS, COLS, 2)
    )
    one_frame_at_a_time = cls()
    for t, p in zip(
        y_true.reshape(-1, ROWS, COLS, 2), y_pred.reshape(-1, ROWS, COLS, 2)
    ):
        one_frame_at_a_time.update_state(t, p)
    want = float(five_d.result())
    np.testing.assert_allclose(float(four_d.result()), want, rtol=1e-6)
    np.testing.assert_allclose(
        float(one_frame_at_a_time.result()), want, rtol=1e-5
    )


@pytest.mark.parametrize(
    "cls,oracle",
    [
        (metrics.StructuralSimilarity, skimage_ssim),
        (metrics.PeakSignalToNoiseRatio, skimage_psnr),
        (
            metrics.FractionsSkillScore,
            lambda t, p, _: pysteps_fss(t, p, 0.5, 3),
        ),
    ],
)
def test_frame_sample_weight_counts_frames_that_many_times(cls, oracle):
    batches = streamed("random", seed=2)
    metric = cls(0.5, 3) if cls is metrics.FractionsSkillScore else cls()
    weights = []
    for y_true, y_pred in batches:
        w = (np.arange(len(y_true) * TIME) % 3).reshape(len(y_true), TIME)
        weights.append(w)
        metric.update_state(y_true, y_pred, sample_weight=w)
    y_true, y_pred = concatenated(batches)
    repeats = np.concatenate(weights).reshape(-1)
    frames = (-1, ROWS, COLS, 1)
    want = oracle(
        np.repeat(y_true.reshape(frames), repeats, axis=0),
        np.repeat(y_pred.reshape(frames), repeats, axis=0),
        1.0,
    )
    np.testing.assert_allclose(float(metric.result()), want, rtol=1e-5)


def test_psnr_of_a_perfect_frame_is_infinite_as_in_skimage():
    y_true, y_pred = random_fields(np.random.default_rng(6), 2)
    y_pred[1, 2] = y_true[1, 2]
    metric = metrics.PeakSignalToNoiseRatio()
    metric.update_state(y_true, y_pred)
    assert float(metric.result()) == np.inf
    assert skimage_psnr(y_true, y_pred, 1.0) == np.inf
    # ...unless that frame weighs nothing.
    metric.reset_state()
    weight = np.ones((2, TIME))
    weight[1, 2] = 0.0
    metric.update_state(y_true, y_pred, sample_weight=weight)
    assert np.isfinite(float(metric.result()))


@pytest.mark.parametrize(
    "cls", [metrics.StructuralSimilarity, metrics.PeakSignalToNoiseRatio]
)
def test_frame_metric_before_any_frame_is_nan(cls):
    assert np.isnan(float(cls().result()))


# --- every metric --------------------------------------------------------


def make(cls):
    if cls is metrics.FractionsSkillScore:
        return cls(0.5, 3)
    if cls in (metrics.StructuralSimilarity, metrics.PeakSignalToNoiseRatio):
        return cls(1.0)
    return cls(0.5)


def oracle_of(cls, y_true, y_pred):
    if cls is metrics.FractionsSkillScore:
        return pysteps_fss(y_true, y_pred, 0.5, 3)
    if cls is metrics.StructuralSimilarity:
        return skimage_ssim(y_true, y_pred, 1.0)
    if cls is metrics.PeakSignalToNoiseRatio:
        return skimage_psnr(y_true, y_pred, 1.0)
    score = {v: k for k, v in CATEGORICAL.items()}[cls]
    return pysteps_score(score, y_true, y_pred, 0.5)


ATOL = {metrics.StructuralSimilarity: 1e-4}


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: c.__name__)
def test_reset_state_forgets_every_batch(cls):
    first, second = streamed("random", seed=7), streamed("random", seed=8)
    metric = make(cls)
    stream(metric, first)
    metric.reset_state()
    got = stream(metric, second)
    want = oracle_of(cls, *concatenated(second))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=ATOL.get(cls, 1e-6))


def test_compiled_model_evaluate_equals_the_oracles(tmp_path):
    # y_pred is the input itself; evaluate streams 6 samples in batches of
    # 4 and 2 through every metric at once. The model saved with its
    # compiled metrics and loaded again evaluates the same.
    y_true, x = concatenated(streamed("random", seed=9))
    inputs = keras.Input((TIME, ROWS, COLS, 1))
    model = keras.Model(inputs, keras.layers.Rescaling(1.0)(inputs))
    model.compile(loss="mse", metrics=[make(cls) for cls in PUBLIC])
    results = model.evaluate(x, y_true, batch_size=4, return_dict=True)
    for cls in PUBLIC:
        name = make(cls).name
        _assert_matches(
            f"{cls.__name__} model.evaluate",
            results[name],
            oracle_of(cls, y_true, x),
            rtol=1e-5,
            atol=ATOL.get(cls, 1e-6),
        )
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    reloaded = loaded.evaluate(x, y_true, batch_size=4, return_dict=True)
    for name, value in results.items():
        np.testing.assert_allclose(reloaded[name], value, rtol=1e-6)


# --- configuration and arguments -------------------------------------------


CONFIGURED = [
    metrics.CriticalSuccessIndex(2.5, name="csi_2_5", dtype="float64"),
    metrics.ProbabilityOfDetection(0.5),
    metrics.FalseAlarmRatio(-1),
    metrics.HeidkeSkillScore(10.0, name="hss"),
    metrics.EquitableThreatScore(1.0),
    metrics.FractionsSkillScore(1.0, 8, name="fss_8"),
    metrics.StructuralSimilarity(255.0),
    metrics.PeakSignalToNoiseRatio(max_val=2, dtype="float64"),
]


@pytest.mark.parametrize("metric", CONFIGURED, ids=lambda m: m.name)
def test_get_config_round_trips_every_argument(metric):
    config = metric.get_config()
    clone = type(metric).from_config(config)
    assert clone.get_config() == config
    names = inspect.signature(type(metric)).parameters
    assert set(config) == set(names)
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(metric)
    )
    assert type(restored) is type(metric)
    assert restored.get_config() == config


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: c.__name__)
def test_registered_under_the_package(cls):
    name = f"keras_convgru>{cls.__name__}"
    assert keras.saving.get_registered_object(name) is cls


@pytest.mark.parametrize(
    "make_metric,error,words",
    [
        (lambda: metrics.CriticalSuccessIndex("1"), TypeError, "threshold='1'"),
        (lambda: metrics.HeidkeSkillScore(True), TypeError, "threshold=True"),
        (
            lambda: metrics.EquitableThreatScore(float("nan")),
            ValueError,
            "threshold=nan",
        ),
        (lambda: metrics.FractionsSkillScore(1.0, 0), ValueError, "scale=0"),
        (
            lambda: metrics.FractionsSkillScore(1.0, 2.5),
            TypeError,
            "scale=2.5",
        ),
        (lambda: metrics.FractionsSkillScore(None, 3), TypeError, "threshold"),
        (lambda: metrics.StructuralSimilarity(0.0), ValueError, "max_val=0.0"),
        (
            lambda: metrics.PeakSignalToNoiseRatio("1"),
            TypeError,
            "max_val='1'",
        ),
        (
            lambda: metrics.PeakSignalToNoiseRatio(float("inf")),
            ValueError,
            "max_val=inf",
        ),
    ],
)
def test_bad_arguments_raise_naming_the_argument(make_metric, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(")):
        make_metric()


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: c.__name__)
def test_mismatched_shapes_raise(cls):
    with pytest.raises(ValueError, match="same shape"):
        make(cls).update_state(np.zeros((2, 8, 8, 1)), np.zeros((2, 8, 9, 1)))


@pytest.mark.parametrize(
    "cls",
    [
        metrics.FractionsSkillScore,
        metrics.StructuralSimilarity,
        metrics.PeakSignalToNoiseRatio,
    ],
)
def test_frame_metrics_need_rows_cols_channels(cls):
    with pytest.raises(ValueError, match="rows, cols, channels"):
        make(cls).update_state(np.zeros((8, 8)), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="frame axes"):
        make(cls).update_state(
            np.zeros((2, 8, 8, 1)),
            np.zeros((2, 8, 8, 1)),
            sample_weight=np.ones((2, 8)),
        )


def test_ssim_needs_frames_of_at_least_seven_pixels():
    with pytest.raises(ValueError, match="cols=6"):
        metrics.StructuralSimilarity().update_state(
            np.zeros((2, 8, 6, 1)), np.zeros((2, 8, 6, 1))
        )


# --- documentation ---------------------------------------------------------


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: c.__name__)
def test_docstring_has_keras_sections_and_a_running_example(cls):
    doc = cls.__doc__
    for section in ("Args:", "Input shape:", "Example:", "```"):
        assert section in doc, f"{cls.__name__} lacks {section}"
    for name in inspect.signature(cls).parameters:
        assert f"        {name}:" in doc, f"{cls.__name__} lacks {name}"
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = finder.find(cls, cls.__name__, globs={})
    assert sum(len(t.examples) for t in tests) > 0
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
