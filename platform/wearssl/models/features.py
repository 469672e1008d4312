"""The 22 hand-crafted features of the paper's random-forest baseline.

Per window of tri-axial acceleration in g (channel-major ``3 x L``):

- per axis x, y, z: mean, std, range (max - min)                                   9
- Pearson correlations xy, xz, yz; 0 when either axis is constant (never NaN)     3
- vector magnitude m: mean, std, range, MAD (median absolute deviation from the
  median, unscaled), skew and excess kurtosis (population moments, as scipy's
  defaults); skew and kurtosis are 0 when m's std <= 0.01 g                        6
- ENMO = mean |m - 1| (no truncation at zero)                                      1
- spectral entropy of m                                                            1
- the frequencies of the two largest peaks of m's spectrum                         2

Spectra are Welch estimates of m: Hann window of 3 s, 2 s overlap, median averaging.
As in the paper's code, the two spectral features come from two spectra:

- the spectral entropy from the spectrum computed WITHOUT detrending, DC bin included,
  as ``scipy.stats.entropy(psd + 1e-16)`` (Shannon entropy in nats of the spectrum
  normalised to sum to 1). Gravity's DC power makes it low for still windows and higher
  the more the movement spreads power over frequencies;
- the dominant frequencies from a second spectrum with each segment's mean removed
  (scipy's default constant detrend). A peak is a bin strictly above its lower neighbour
  and at least its upper one, DC and Nyquist excluded; a window with fewer than two
  peaks gets 0 Hz for each missing one, and a window whose magnitude is constant gets 0.

Each choice moves the forest's macro F1 by several points on real wrist data, so they are
pinned by tests.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import welch
from scipy.stats import entropy as scipy_entropy

AXES = ("x", "y", "z")
AXIS_PAIRS = ((0, 1), (0, 2), (1, 2))
FEATURE_NAMES: tuple[str, ...] = (
    *(f"{axis}_{stat}" for axis in AXES for stat in ("mean", "std", "range")),
    *(f"corr_{AXES[a]}{AXES[b]}" for a, b in AXIS_PAIRS),
    "mag_mean",
    "mag_std",
    "mag_range",
    "mag_mad",
    "mag_skew",
    "mag_kurtosis",
    "enmo",
    "mag_spectral_entropy",
    "mag_dominant_freq_1",
    "mag_dominant_freq_2",
)
WELCH_SEGMENT_SECONDS = 3
WELCH_OVERLAP_SECONDS = 2
MOMENT_MIN_STD_G = 0.01
# Below this std a signal counts as constant: far under any accelerometer's resolution
# (the AX3's step is 3.9 mg), well above float round-off of a constant signal.
CONSTANT_STD_G = 1e-6
CHUNK_WINDOWS = 8192
# added to every PSD bin before the entropy, as in the paper's code (keeps log finite)
ENTROPY_FLOOR = 1e-16


def window_features(windows: np.ndarray, sample_rate_hz: float = 30.0) -> np.ndarray:
    """(n, 3, L) windows in g -> (n, 22) float32 features in FEATURE_NAMES order.

    Vectorised over windows; computed in float64 in chunks of CHUNK_WINDOWS to bound memory.
    """
    windows = np.asarray(windows)
    if windows.ndim != 3 or windows.shape[1] != len(AXES):
        raise ValueError(f"windows must have shape (n, 3, L); got {windows.shape}")
    if not sample_rate_hz > 0:
        raise ValueError(f"sample_rate_hz must be positive; got {sample_rate_hz}")
    segment = welch_segment_samples(sample_rate_hz)
    if windows.shape[2] < segment:
        raise ValueError(
            f"windows of {windows.shape[2]} samples are shorter than one Welch segment "
            f"({segment} samples = {WELCH_SEGMENT_SECONDS} s at {sample_rate_hz} Hz)"
        )
    chunks = [
        _chunk_features(windows[start : start + CHUNK_WINDOWS], sample_rate_hz)
        for start in range(0, len(windows), CHUNK_WINDOWS)
    ]
    if not chunks:
        return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32)


def welch_segment_samples(sample_rate_hz: float) -> int:
    return int(round(WELCH_SEGMENT_SECONDS * sample_rate_hz))


def _chunk_features(windows: np.ndarray, sample_rate_hz: float) -> np.ndarray:
    xyz = windows.astype(np.float64)
    if not np.isfinite(xyz).all():
        raise ValueError("windows contain NaN or infinite samples")
    magnitude = np.sqrt(np.sum(xyz**2, axis=1))
    axis_stats = np.stack([xyz.mean(axis=2), xyz.std(axis=2), np.ptp(xyz, axis=2)], axis=2)
    columns = [
        axis_stats.reshape(len(xyz), -1),
        _axis_correlations(xyz),
        _magnitude_stats(magnitude),
        np.mean(np.abs(magnitude - 1.0), axis=1, keepdims=True),
        _spectral_features(magnitude, sample_rate_hz),
    ]
    return np.concatenate(columns, axis=1)


def _axis_correlations(xyz: np.ndarray) -> np.ndarray:
    """(n, 3, L) -> (n, 3) Pearson correlations xy, xz, yz; 0 where an axis is constant."""
    centred = xyz - xyz.mean(axis=2, keepdims=True)
    std = np.sqrt(np.mean(centred**2, axis=2))
    correlations = []
    for a, b in AXIS_PAIRS:
        covariance = np.mean(centred[:, a] * centred[:, b], axis=1)
        scale = std[:, a] * std[:, b]
        defined = (std[:, a] > CONSTANT_STD_G) & (std[:, b] > CONSTANT_STD_G)
        ratio = np.divide(covariance, scale, out=np.zeros_like(covariance), where=defined)
        correlations.append(np.clip(ratio, -1.0, 1.0))
    return np.stack(correlations, axis=1)


def _magnitude_stats(magnitude: np.ndarray) -> np.ndarray:
    """(n, L) -> (n, 6): mean, std, range, MAD, skew, excess kurtosis."""
    mean = magnitude.mean(axis=1, keepdims=True)
    centred = magnitude - mean
    variance = np.mean(centred**2, axis=1)
    std = np.sqrt(variance)
    median = np.median(magnitude, axis=1, keepdims=True)
    mad = np.median(np.abs(magnitude - median), axis=1)
    moments_defined = std > MOMENT_MIN_STD_G
    skew = np.divide(
        np.mean(centred**3, axis=1),
        variance**1.5,
        out=np.zeros_like(variance),
        where=moments_defined,
    )
    kurtosis = np.divide(
        np.mean(centred**4, axis=1),
        variance**2,
        out=np.full_like(variance, 3.0),
        where=moments_defined,
    )
    stats = [mean[:, 0], std, np.ptp(magnitude, axis=1), mad, skew, kurtosis - 3.0]
    return np.stack(stats, axis=1)


def _spectral_features(magnitude: np.ndarray, sample_rate_hz: float) -> np.ndarray:
    """(n, L) -> (n, 3): spectral entropy (nats), first and second dominant frequency (Hz)."""
    _, raw_psd = _welch(magnitude, sample_rate_hz, detrend=False)
    freqs, detrended_psd = _welch(magnitude, sample_rate_hz, detrend="constant")
    entropy = scipy_entropy(raw_psd + ENTROPY_FLOOR, axis=1)
    has_spectrum = magnitude.std(axis=1) > CONSTANT_STD_G
    dominant = _dominant_frequencies(freqs, detrended_psd, count=2)
    return np.column_stack([entropy, np.where(has_spectrum[:, None], dominant, 0.0)])


def _welch(
    magnitude: np.ndarray, sample_rate_hz: float, detrend: str | bool
) -> tuple[np.ndarray, np.ndarray]:
    return welch(
        magnitude,
        fs=sample_rate_hz,
        window="hann",
        nperseg=welch_segment_samples(sample_rate_hz),
        noverlap=int(round(WELCH_OVERLAP_SECONDS * sample_rate_hz)),
        detrend=detrend,
        average="median",
        axis=-1,
    )


def _dominant_frequencies(freqs: np.ndarray, psd: np.ndarray, count: int) -> np.ndarray:
    """Frequencies of the `count` highest interior PSD peaks per row, 0 where missing."""
    interior = psd[:, 1:-1]
    is_peak = (interior > psd[:, :-2]) & (interior >= psd[:, 2:])
    peak_power = np.where(is_peak, interior, -np.inf)
    order = np.argsort(-peak_power, axis=1, kind="stable")[:, :count]
    found = np.take_along_axis(is_peak, order, axis=1)
    return np.where(found, freqs[1:-1][order], 0.0)
