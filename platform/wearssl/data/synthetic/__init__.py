"""Synthetic free-living wrist accelerometry: tri-axial acceleration in g, with gravity.

The generator stands in for real recordings wherever those are absent (tests, the
quickstart, benchmarks) and gives data with a known activity schedule (prediction tests,
synthetic raw device files). Each subject has lasting traits (how the watch sits on the
wrist, gait cadence and waveform, movement amplitudes, sensor noise, bedtime); each
subject-day has its own schedule: a night's sleep with rare posture changes, daytime
bouts of sedentary, household and walking activity, sometimes a run, and 0-2 non-wear
periods with the watch lying still on a table.

Everything is deterministic: a subject's traits come from a generator seeded with
(seed, subject), a calendar day's schedule and signal from one seeded with
(seed, subject, day), and the night between two days from one seeded with
(seed, subject, morning), so any subject-day can be made on its own, in any process,
and two consecutive days agree on the timing of the night between them (the sleeping
posture may change at midnight).

Gait cycles are deliberately time-asymmetric (sharp heel-strike rise with a slower
decay, and a 2nd harmonic whose phase keeps the waveform from being its own mirror
image), so a reversed walking window is statistically distinguishable, as in real data:
the arrow-of-time pretext task depends on it. Household movement is hand tasks of steady
strokes with the same kind of jolt (see ``signal._household``).

Modules: ``subjects`` (activities, traits, random streams, schedules), ``signal`` (the
signal of a schedule), ``recordings`` (continuous recordings), ``corpus_writer``
(synthetic corpora), ``labelled`` (synthetic labelled sets).
"""

from wearssl.data.synthetic.corpus_writer import (
    check_generator,
    ensure_synthetic_corpus,
    manifest_summary,
    synth_subject_day,
    write_synthetic_corpus,
)
from wearssl.data.synthetic.labelled import synthetic_labelled_set
from wearssl.data.synthetic.recordings import (
    SyntheticRecording,
    synth_recording,
    synthetic_subject_id,
)
from wearssl.data.synthetic.signal import synth_signal
from wearssl.data.synthetic.subjects import (
    ACTIVITIES,
    EPOCH_DAY,
    GENERATOR_VERSION,
    HOUSEHOLD,
    NON_WEAR,
    RUNNING,
    SECONDS_PER_DAY,
    SEDENTARY,
    SLEEP,
    WALKING,
    WINDOWS_PER_DAY,
    Schedule,
    SubjectTraits,
    day_schedule,
    subject_traits,
)

__all__ = [
    "ACTIVITIES",
    "EPOCH_DAY",
    "GENERATOR_VERSION",
    "HOUSEHOLD",
    "NON_WEAR",
    "RUNNING",
    "SECONDS_PER_DAY",
    "SEDENTARY",
    "SLEEP",
    "WALKING",
    "WINDOWS_PER_DAY",
    "Schedule",
    "SubjectTraits",
    "SyntheticRecording",
    "check_generator",
    "day_schedule",
    "ensure_synthetic_corpus",
    "manifest_summary",
    "subject_traits",
    "synth_recording",
    "synth_signal",
    "synth_subject_day",
    "synthetic_labelled_set",
    "synthetic_subject_id",
    "write_synthetic_corpus",
]
