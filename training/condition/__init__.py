"""The condition corpus (clean windows, deliberately aged or broken) and the condition classifier.

Three modules, one job each: :mod:`training.condition.data` (the degradations and the
corpus), :mod:`training.condition.train` (the classifier and its calibration) and
:mod:`training.condition.report` (its evaluation and report); ``__main__`` is the command line.

Usage::

    python -m training.condition build --corpus data/corpus --out data/condition
    python -m training.condition train --data data/condition --out runs/condition \\
        --report training/reports/condition/2.0.0 --version 2.0.0
    python -m training.condition praat --corpus data/corpus   # our HNR next to Praat's
    python -m training.condition evaluate                     # accuracy on every split, train included

``build`` reads an NSynth-format corpus built by ``python -m training.corpus`` with the real
recorded libraries (``--sources``): splits by instrument and by sample library, each used
whole — train (SoundFont programs and the real train libraries) fits, valid (held-out
SoundFont programs) chooses, test (every TimGM6mb instrument) and dev (the real dev libraries:
FreePats, the MTG saxophones, the FreePats Spanish guitar, the solfège singers) only report.
Per instrument a seeded draw of notes (24 per SoundFont program, 120 per real train instrument;
30 in valid, 24 in test and dev) gives one *base* each: one analysis window (2.949 s, what the
analyzer judges) cut from music made of the note and its instrument's other notes — the note
alone, the window starting up to 1 s into it or up to 0.5 s before it, or (45 %, and whenever
the clip is short) a phrase of 2-5 notes held 0.25-1.6 s, legato or detached. Each base gives
three labelled clips, all from a generator seeded by (seed, split, note):

* every clip: 30 % of the time mixed with 1-2 windows of other instruments of the split
  (0.3-1.0 of its level), so that polyphony alone is not taken for damage;
* ``healthy`` - nothing more;
* ``moderately_aged`` - one main cue: where the family has it (half of the time) a detuned
  unison string (a copy 8-25 cents off at 50-90 % of the level: string, guitar, keyboard),
  worn hammers (a noisy thump 6-18 dB below the note and a brighter attack on every note:
  keyboard, mallet) or a leaking pad (breath noise, 1-7 kHz, following the note 12-22 dB below
  it: reed, flute, brass); otherwise worn tape (wow 6-18 cents at 0.5-3 Hz and/or flutter
  3-8 cents at 8-16 Hz, with 0-2 of dulled highs (3.5-8 kHz) and hiss at 28-40 dB SNR),
  mild hiss (22-32 dB SNR) or mains hum (50/60 Hz and two harmonics, 20-30 dB down). Then,
  half of the time, dulled highs (low-pass 1.5-5 kHz or a -8..-15 dB high shelf) and a quarter
  of the time a faster decay (time constant 0.5-1.5 s per note: dead strings);
* ``broken_noisy`` - 1-2 of: buzz (a 50-140 Hz sawtooth following the note) or rattle (noise
  gated by the note's waveform); rattles (10-40 clicks per second); hard clipping at 5-35 %
  of the peak, ``pedalboard.Distortion`` 18-36 dB or ``pedalboard.Bitcrush`` 3-6 bits; strong
  noise (-3 to 12 dB SNR); dropouts (3-10 gaps of 20-150 ms).

Then every clip passes the *benign* chain, what any clean recording may carry: with
probability 0.3 a little room (``pedalboard.Reverb``), 0.3 a microphone's colour (a peak
filter ±4 dB), 0.15 a band limit (low-pass 7-10 kHz), 0.4 a recording noise floor at
38-60 dB SNR, and a random level (peak 0.3-1.0). In test and dev each base also gives a
*clean* copy (healthy, nothing mixed or added): the false-alarm rate on clean renders (test)
and on clean real recordings (dev).

With ``--loops P`` a share ``P`` of the **train** bases (each base's own draw) play their note
as an old sample-based instrument does (``data.looped_sustain``): the attack as recorded, then
one stretch of 4-60 ms of the sustain repeated under the note's envelope, joined where the
waveform matches. It is benign, like the chain above, so every class gets it; the other splits
are built as recorded. ``loop_ms`` records each row's loop length (0: none).

With ``--real-train-bases N`` each real recorded train instrument gives up to N bases (all its
clips when it has fewer) instead of 120: the same seeded order of its clips cut later, so the
default's base notes are among them (their windows can differ: phrases and mixtures draw
from the larger plan).

Features (:func:`instrunet_condition.features.condition_features`) are computed for every
clip and written to ``OUT/<split>.npz`` (``x`` the raw feature table, ``y`` the class index,
``note``, ``instrument``, ``family``, ``source``, ``real``, ``base``, ``mix``, ``clean``,
``degradations``); ``OUT/condition.json`` records the seed, counts and this recipe. ``train``
fits a small Keras MLP on ``feature_vector`` inputs (standardisation inside the model),
keeps the epoch with the best valid log-loss, calibrates it on valid (a temperature and
per-class offsets, fitted by log-loss), and writes the report: accuracy, per-class recall,
confusion matrices, reliability, false alarms on clean renders and on clean real
recordings, recall per degradation, permutation importance.
"""

from __future__ import annotations
