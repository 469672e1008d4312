"""The 22 window features: known answers on synthetic signals, and agreement of the
vectorised code with an independent per-window computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import find_peaks, welch
from scipy.stats import kurtosis, skew

from wearssl.models.features import FEATURE_NAMES, window_features

RATE = 30.0
SAMPLES = 300
TIME_S = np.arange(SAMPLES) / RATE
WELCH_BIN_HZ = RATE / 90


def column(features: np.ndarray, name: str) -> np.ndarray:
    return features[:, FEATURE_NAMES.index(name)]


def window(x: np.ndarray | float = 0.0, y: np.ndarray | float = 0.0, z: np.ndarray | float = 1.0):
    return np.stack([np.broadcast_to(a, SAMPLES) for a in (x, y, z)]).astype(np.float64)


def sinusoid(hz: float, amplitude: float = 1.0) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * hz * TIME_S)


def test_names_and_shape():
    assert len(FEATURE_NAMES) == 22
    assert len(set(FEATURE_NAMES)) == 22
    windows = np.random.default_rng(0).normal(size=(7, 3, SAMPLES))
    features = window_features(windows)
    assert features.shape == (7, 22)
    assert features.dtype == np.float32
    assert np.isfinite(features).all()


def test_still_window_at_one_g():
    features = window_features(window()[None])
    expected_zero = [
        *(f"{a}_{s}" for a in "xyz" for s in ("std", "range")),
        "corr_xy",
        "corr_xz",
        "corr_yz",
        "mag_std",
        "mag_range",
        "mag_mad",
        "mag_skew",
        "mag_kurtosis",
        "enmo",
        "mag_dominant_freq_1",
        "mag_dominant_freq_2",
    ]
    for name in expected_zero:
        assert column(features, name)[0] == 0.0, name
    assert column(features, "mag_mean")[0] == pytest.approx(1.0)
    assert column(features, "z_mean")[0] == pytest.approx(1.0)
    # gravity's DC power, leaking through the Hann window into the first bin only
    assert 0 < column(features, "mag_spectral_entropy")[0] < 1.0


def test_enmo_is_mean_absolute_deviation_from_one_g_without_truncation():
    still_half_g = window(z=0.5)[None]
    assert column(window_features(still_half_g), "enmo")[0] == pytest.approx(0.5)


def test_sinusoid_along_gravity_has_its_dominant_frequency():
    features = window_features(window(z=1.0 + sinusoid(2.0, 0.5))[None])
    assert column(features, "mag_dominant_freq_1")[0] == pytest.approx(2.0, abs=WELCH_BIN_HZ)


def test_two_tones_give_both_dominant_frequencies_strongest_first():
    signal = 1.0 + sinusoid(2.0, 0.5) + sinusoid(5.0, 0.2)
    features = window_features(window(z=signal)[None])
    assert column(features, "mag_dominant_freq_1")[0] == pytest.approx(2.0, abs=WELCH_BIN_HZ)
    assert column(features, "mag_dominant_freq_2")[0] == pytest.approx(5.0, abs=WELCH_BIN_HZ)


def test_sideways_sinusoid_doubles_in_magnitude():
    """|(a sin wt, 0, 1)| ~ 1 + a^2 sin^2(wt) / 2 oscillates at twice the frequency."""
    features = window_features(window(x=sinusoid(2.0, 0.3))[None])
    assert column(features, "mag_dominant_freq_1")[0] == pytest.approx(4.0, abs=WELCH_BIN_HZ)


def test_spectral_entropy_is_lower_for_a_tone_than_for_noise():
    noise = np.random.default_rng(1).normal(scale=0.2, size=SAMPLES)
    windows = np.stack([window(z=1.0 + sinusoid(3.0, 0.3)), window(z=1.0 + noise)])
    entropy = column(window_features(windows), "mag_spectral_entropy")
    assert 0 < entropy[0] < entropy[1] <= np.log(46)


def test_spectral_entropy_keeps_gravity_in_the_spectrum():
    """Without detrending the DC bin holds gravity, so a still wrist has a low entropy
    (below 1 nat); a detrended spectrum would spread the sensor noise over every bin
    (near log 45 = 3.8 nats)."""
    still = window(z=1.0 + np.random.default_rng(6).normal(scale=0.004, size=SAMPLES))
    entropy = column(window_features(still[None]), "mag_spectral_entropy")[0]
    assert 0 < entropy < 1.0


def test_correlations_known_answers():
    wave = sinusoid(1.5, 0.4)
    windows = np.stack(
        [
            window(x=wave, y=2 * wave + 0.1, z=1.0 - wave),
            window(x=wave, y=0.2, z=1.0 + wave),
        ]
    )
    features = window_features(windows)
    assert column(features, "corr_xy")[0] == pytest.approx(1.0, abs=1e-6)
    assert column(features, "corr_xz")[0] == pytest.approx(-1.0, abs=1e-6)
    assert column(features, "corr_yz")[0] == pytest.approx(-1.0, abs=1e-6)
    assert column(features, "corr_xy")[1] == 0.0
    assert column(features, "corr_yz")[1] == 0.0
    assert column(features, "corr_xz")[1] == pytest.approx(1.0, abs=1e-6)


def test_skew_and_kurtosis_vanish_below_the_std_threshold():
    rng = np.random.default_rng(2)
    quiet = window(z=1.0 + rng.exponential(0.005, SAMPLES))
    features = window_features(quiet[None])
    assert 0 < column(features, "mag_std")[0] <= 0.01
    assert column(features, "mag_skew")[0] == 0.0
    assert column(features, "mag_kurtosis")[0] == 0.0


def reference_features(xyz: np.ndarray) -> np.ndarray:
    """One window's features computed independently with numpy and scipy helpers."""
    magnitude = np.linalg.norm(xyz, axis=0)
    per_axis = [f(a) for a in xyz for f in (np.mean, np.std, np.ptp)]
    correlations = np.corrcoef(xyz)[[0, 0, 1], [1, 2, 2]]
    freqs, psd = welch(magnitude, fs=RATE, window="hann", nperseg=90, noverlap=60, average="median")
    _, raw_psd = welch(
        magnitude, fs=RATE, window="hann", nperseg=90, noverlap=60, average="median", detrend=False
    )
    probability = (raw_psd + 1e-16) / (raw_psd + 1e-16).sum()
    entropy = -np.sum(probability * np.log(probability))
    peaks, _ = find_peaks(psd)
    strongest = peaks[np.argsort(-psd[peaks], kind="stable")][:2]
    return np.array(
        [
            *per_axis,
            *correlations,
            magnitude.mean(),
            magnitude.std(),
            np.ptp(magnitude),
            np.median(np.abs(magnitude - np.median(magnitude))),
            skew(magnitude),
            kurtosis(magnitude),
            np.mean(np.abs(magnitude - 1)),
            entropy,
            *freqs[strongest],
        ]
    )


def test_vectorised_features_match_a_per_window_computation():
    rng = np.random.default_rng(3)
    tones = [1.0 + sinusoid(hz, 0.4) for hz in (0.8, 2.5, 6.0)]
    windows = np.stack(
        [window(x=rng.normal(0, 0.3, SAMPLES), y=rng.normal(0, 0.1, SAMPLES), z=t) for t in tones]
        + [rng.normal(0, 0.5, (3, SAMPLES)) for _ in range(3)]
    )
    features = window_features(windows)
    for index, xyz in enumerate(windows):
        np.testing.assert_allclose(features[index], reference_features(xyz), rtol=1e-4, atol=1e-5)


def test_chunking_gives_the_same_features(monkeypatch):
    windows = np.random.default_rng(4).normal(size=(9, 3, SAMPLES))
    whole = window_features(windows)
    monkeypatch.setattr("wearssl.models.features.CHUNK_WINDOWS", 4)
    np.testing.assert_array_equal(window_features(windows), whole)


def test_other_window_lengths_and_rates():
    long_window = np.random.default_rng(5).normal(size=(2, 3, 900))
    assert window_features(long_window).shape == (2, 22)
    at_100hz = np.stack(
        [np.zeros(1000), np.zeros(1000), 1 + 0.3 * np.sin(2 * np.pi * 3 * np.arange(1000) / 100)]
    )
    features = window_features(at_100hz[None], sample_rate_hz=100.0)
    assert column(features, "mag_dominant_freq_1")[0] == pytest.approx(3.0, abs=100 / 300)


def test_empty_input_gives_an_empty_table():
    assert window_features(np.zeros((0, 3, SAMPLES))).shape == (0, 22)


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        (np.zeros((4, SAMPLES)), "shape"),
        (np.zeros((4, 2, SAMPLES)), "shape"),
        (np.zeros((4, 3, 60)), "shorter than one Welch segment"),
        (np.full((1, 3, SAMPLES), np.nan), "NaN"),
    ],
)
def test_bad_input_is_named(windows, message):
    with pytest.raises(ValueError, match=message):
        window_features(windows)


def test_bad_rate_is_named():
    with pytest.raises(ValueError, match="sample_rate_hz"):
        window_features(np.zeros((1, 3, SAMPLES)), sample_rate_hz=0)
