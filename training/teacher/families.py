"""AudioSet classes → our eight families, and the "none of the eight" groups of issue 26.

Each family or group is a tuple of ``(index, display name)`` pairs of YAMNet's class map;
:func:`check_mapping` refuses a class map in which any pair does not hold, so a class can
never be pooled under the wrong name. The families follow what the corpus puts in each (the
General MIDI programs of ``training.corpus.PROGRAMS``):

* a family pools only the classes that name its instruments; AudioSet's parent classes
  (``Brass instrument``, ``Keyboard (musical)``, ``Mallet percussion``, ``Bowed string
  instrument``, ``Plucked string instrument``, ``Wind instrument, woodwind instrument``) are in
  :data:`FAMILY_PARENTS`, outside the pooled scores (they fire for the whole family, and the
  woodwind one for flutes and reeds alike, tying them);
* organs, accordion and harmonica are GM's organ group (programs 16-23), not keyboard or reed;
* harp, banjo, mandolin, ukulele, sitar, zither are not in the corpus's guitar or string
  programs: they go to ``other_instrument``;
* vocal is sung voice only (``Singing``, ``Choir``, ``A capella``, ``Rapping`` ...), never
  ``Speech``.

Generic music classes (``Music``, ``Musical instrument``, genres such as ``Jazz`` or
``Classical music``, ``Orchestra``) belong to no family or group: they fire on any music and
tell no family apart.

Pooling: a family's score is the **maximum** of its classes' scores (:func:`pool`); the
noisy-or (``1 - prod(1 - p)``) is available for comparison. YAMNet's classes are
hierarchical and fire together, so a noisy-or counts one piece of evidence several times
and favours families with many classes; the maximum does not depend on how many classes a
family has. ``python -m training.teacher evaluate`` measures the choices (docs/teacher.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .weights import N_CLASSES, TeacherError

__all__ = [
    "FAMILY_CLASSES",
    "FAMILY_PARENTS",
    "OTHER_GROUPS",
    "GROUPS",
    "with_parents",
    "check_mapping",
    "pool",
    "POOLINGS",
]

Classes = tuple[tuple[int, str], ...]

#: The classes that name one family's instruments. A family's score pools these only.
FAMILY_CLASSES: dict[str, Classes] = {
    "brass": ((181, "French horn"), (182, "Trumpet"), (183, "Trombone")),
    "flute": ((191, "Flute"),),
    "guitar": (
        (135, "Guitar"),
        (136, "Electric guitar"),
        (138, "Acoustic guitar"),
        (139, "Steel guitar, slide guitar"),
        (140, "Tapping (guitar technique)"),
        (141, "Strum"),
    ),
    "keyboard": ((148, "Piano"), (149, "Electric piano"), (155, "Harpsichord")),
    "mallet": (
        (173, "Tubular bells"),
        (175, "Marimba, xylophone"),
        (176, "Glockenspiel"),
        (177, "Vibraphone"),
        (178, "Steelpan"),
    ),
    "reed": ((192, "Saxophone"), (193, "Clarinet")),
    "string": (
        (185, "String section"),
        (186, "Violin, fiddle"),
        (187, "Pizzicato"),
        (188, "Cello"),
        (189, "Double bass"),
    ),
    "vocal": (
        (24, "Singing"),
        (25, "Choir"),
        (26, "Yodeling"),
        (27, "Chant"),
        (28, "Mantra"),
        (29, "Child singing"),
        (30, "Synthetic singing"),
        (31, "Rapping"),
        (32, "Humming"),
        (249, "Vocal music"),
        (250, "A capella"),
    ),
}
#: AudioSet's parent classes of the families. They fire on any member of the family (and
#: ``Wind instrument`` on flutes and reeds alike); kept out of the pooled family scores, where
#: they lowered the balanced accuracy (docs/teacher.md), and available for other uses.
FAMILY_PARENTS: dict[str, Classes] = {
    "brass": ((180, "Brass instrument"),),
    "flute": ((190, "Wind instrument, woodwind instrument"),),
    "guitar": ((134, "Plucked string instrument"),),
    "keyboard": ((147, "Keyboard (musical)"),),
    "mallet": ((174, "Mallet percussion"),),
    "reed": ((190, "Wind instrument, woodwind instrument"),),
    "string": ((184, "Bowed string instrument"),),
}


def with_parents() -> dict[str, Classes]:
    """Each family's classes plus its parent classes (:data:`FAMILY_PARENTS`)."""
    return {f: FAMILY_PARENTS.get(f, ()) + c for f, c in FAMILY_CLASSES.items()}


def _span(first: int, last: int, names: Sequence[str]) -> Classes:
    """Classes ``first..last`` inclusive, the ends checked by name (``names = (first, last)``)."""
    return ((first, names[0]),) + tuple((i, "") for i in range(first + 1, last)) + ((last, names[1]),)


_NOISE: Classes = (
    (58, "Clapping"),
    (61, "Cheering"),
    (62, "Applause"),
    (63, "Chatter"),
    (64, "Crowd"),
    (65, "Hubbub, speech noise, speech babble"),
    (279, "Wind noise (microphone)"),
    (490, "Hum"),
    (507, "Noise"),
    (508, "Environmental noise"),
    (509, "Static"),
    (510, "Mains hum"),
    (511, "Distortion"),
    (513, "Cacophony"),
    (514, "White noise"),
    (515, "Pink noise"),
    (516, "Throbbing"),
    (517, "Vibration"),
)
_NOISE_IDX = {i for i, _ in _NOISE}
_TOOLS_OF_MUSIC = {456, 457, 458}  # Electronic tuner, Effects unit, Chorus effect: they come with music

OTHER_GROUPS: dict[str, Classes] = {
    "speech": _span(0, 23, ("Speech", "Sigh")),
    "percussion": _span(156, 172, ("Percussion", "Gong")) + ((213, "Beatboxing"),),
    "electronic": (
        (153, "Synthesizer"),
        (154, "Sampler"),
        (208, "Theremin"),
        (234, "Electronic music"),
        (235, "House music"),
        (236, "Techno"),
        (237, "Dubstep"),
        (238, "Drum and bass"),
        (239, "Electronica"),
        (240, "Electronic dance music"),
        (242, "Trance music"),
        (475, "Beep, bleep"),
        (495, "Sine wave"),
        (497, "Chirp tone"),
        (499, "Pulse"),
    ),
    "organ": (
        (150, "Organ"),
        (151, "Electronic organ"),
        (152, "Hammond organ"),
        (203, "Harmonica"),
        (204, "Accordion"),
    ),
    "bass": ((137, "Bass guitar"),),
    "other_instrument": (
        (142, "Banjo"),
        (143, "Sitar"),
        (144, "Mandolin"),
        (145, "Zither"),
        (146, "Ukulele"),
        (194, "Harp"),
        (195, "Bell"),
        (196, "Church bell"),
        (197, "Jingle bell"),
        (199, "Tuning fork"),
        (200, "Chime"),
        (201, "Wind chime"),
        (202, "Change ringing (campanology)"),
        (205, "Bagpipes"),
        (206, "Didgeridoo"),
        (207, "Shofar"),
        (209, "Singing bowl"),
        (210, "Scratching (performance technique)"),
    ),
    "noise": _NOISE,
    # Human non-speech sounds, animals, nature, vehicles, household and mechanical sounds:
    # the ontology's spans, without what "noise" holds and the music tools.
    "environment": tuple(
        c
        for c in _span(33, 60, ("Groan", "Heart murmur"))
        + _span(66, 131, ("Children playing", "Whale vocalization"))
        + _span(277, 493, ("Wind", "Crunch"))
        if c[0] not in _NOISE_IDX and c[0] not in _TOOLS_OF_MUSIC
    ),
    "silence": ((494, "Silence"),),
}

#: Every family and group in output order: the eight families, then the others.
GROUPS: dict[str, Classes] = {**FAMILY_CLASSES, **OTHER_GROUPS}
POOLINGS = ("max", "noisy_or")


def check_mapping(names: Sequence[str]) -> None:
    """Refuse a class map where a named ``(index, name)`` pair of :data:`GROUPS` does not hold."""
    if len(names) != N_CLASSES:
        raise TeacherError(f"class map has {len(names)} classes, YAMNet has {N_CLASSES}")
    for group, classes in [*GROUPS.items(), *FAMILY_PARENTS.items()]:
        for i, name in classes:
            if name and names[i] != name:
                raise TeacherError(f"{group}: class {i} is {names[i]!r} in the class map, not {name!r}")
    for fam, classes in with_parents().items():
        for other, oc in OTHER_GROUPS.items():
            shared = {i for i, _ in classes} & {i for i, _ in oc}
            if shared:
                raise TeacherError(f"classes {sorted(shared)} are both in family {fam} and group {other}")


def _indices(groups: dict[str, Classes]) -> list[np.ndarray]:
    return [np.array([i for i, _ in classes], dtype=np.int64) for classes in groups.values()]


def pool(scores: np.ndarray, groups: dict[str, Classes] | None = None, *, how: str = "max") -> np.ndarray:
    """Pool AudioSet scores ``[..., 521]`` into ``[..., len(groups)]`` (default :data:`GROUPS`).

    ``how="max"``: the largest class score; ``"noisy_or"``: ``1 - prod(1 - p)``.
    """
    scores = np.asarray(scores, dtype=np.float32)
    if scores.shape[-1] != N_CLASSES:
        raise ValueError(f"scores must end in {N_CLASSES} classes, got shape {scores.shape}")
    idx = _indices(GROUPS if groups is None else groups)
    if how == "max":
        cols = [scores[..., i].max(axis=-1) for i in idx]
    elif how == "noisy_or":
        cols = [1.0 - np.prod(1.0 - scores[..., i], axis=-1) for i in idx]
    else:
        raise ValueError(f"how must be one of {POOLINGS}, got {how!r}")
    return np.stack(cols, axis=-1).astype(np.float32)
