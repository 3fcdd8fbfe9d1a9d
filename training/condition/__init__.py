"""The condition corpus (clean notes, deliberately degraded) and the condition classifier.

Three modules, one job each: :mod:`training.condition.data` (the degradations and the
corpus), :mod:`training.condition.train` (the classifier) and :mod:`training.condition.report`
(its evaluation and report); ``__main__`` is the command line.

Usage::

    python -m training.condition build --corpus data/corpus --out data/condition [--seed 20261125]
    python -m training.condition train --data data/condition --out runs/condition \\
        --report training/reports/condition/1.0.0
    python -m training.condition praat --corpus data/corpus   # our HNR next to Praat's
    python -m training.condition evaluate                     # accuracy on every split, train included

``build`` reads every note of an NSynth-format corpus built by ``python -m training.corpus``
(splits by instrument: train / valid / test = every TimGM6mb instrument) and makes three
labelled clips of each, with a generator seeded by (seed, note):

* ``healthy`` - the clean note; with probability 0.35 a *phrase* instead (the note cut
  short and followed by 1-3 other notes of the same instrument, 10 ms cross-fades), and
  with probability 0.3 mixed with 1-2 notes of other instruments of the same split (so
  that note changes and polyphony alone are not taken for damage); then the *benign*
  chain every clip gets (below). The aged and broken clips start from a base made the
  same way;
* ``moderately_aged`` - one mild cue that something is off (detuned double (beating, 4-15
  cents), chorus, or mild hiss / hum at 22-32 dB SNR) plus 0-2 of: damped high partials
  (low-pass 1.5-4 kHz or high shelf -6 to -15 dB), a faster or unsteady decay (exponential
  fade with a 0.6-2 s time constant, slow 0.5-2 Hz tremolo of 10-30 %);
* ``broken_noisy`` - 1-2 of: buzz (a 50-140 Hz sawtooth, or a rattle: noise gated by the
  note's own waveform), rattles (10-40 clicks per second), clipping or distortion
  (hard clip at 5-35 % of the peak, ``pedalboard.Distortion`` 18-36 dB,
  ``pedalboard.Bitcrush`` 3-6 bits), strong noise (-3 to 12 dB SNR), dropouts (3-10 gaps of
  20-150 ms).

The benign chain, drawn independently for every clip of every class: random level (peak
0.3-1.0), with probability 0.3 light ``pedalboard.Reverb``, with probability 0.3 a
recording noise floor at 45-60 dB SNR. Every clip is peak-normalised after degradation, as
recorded audio is.

Features (:func:`instrunet_condition.features.condition_features`) are computed for every
clip and written to ``OUT/<split>.npz`` (``x`` raw feature table, ``y`` class index,
``note``, ``instrument``, ``family``, ``mix``, ``degradations``); ``OUT/condition.json``
records the seed, counts and the degradation recipe. ``train`` fits a small Keras MLP on
``feature_vector`` inputs (normalisation inside the model), keeps the epoch with the best
valid accuracy, and writes the test report (accuracy, per-class recall, confusion matrix,
false-alarm rate on clean notes, and on the bundled examples).
"""

from __future__ import annotations
