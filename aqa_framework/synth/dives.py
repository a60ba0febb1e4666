"""Synthetic dives: what is dived, how well, what the judges give and what the commentator says.

Everything here is synthetic. A dive has the five MTL-AQA class fields (position, armstand,
rotation type, ``ss_no`` = 2 x somersaults, ``tw_no`` = 2 x twists); its degree of difficulty
follows from them through a fixed table-like formula. Its execution faults are an entry that
is over- or under-rotated by ``rotation_error`` degrees (seen as the tilt of the body when it
enters the water) and a ``splash`` of size 0-1 (seen as the white plume). The faults set the
execution level, seven judges mark it with a little noise (rounded to half points), and the
final score is the real formula: difficulty x the sum of the middle three marks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Dive",
    "caption_words",
    "difficulty",
    "execution_level",
    "judge",
    "sample_dive",
]

POSITIONS = ("free", "pike", "tuck")
ROTATIONS = ("back", "forward", "inward", "reverse")

_SS_WEIGHTS = {2: 0.03, 3: 0.10, 4: 0.10, 5: 0.27, 6: 0.08, 7: 0.30, 9: 0.12}
_TW_WEIGHTS = {0: 0.55, 1: 0.08, 2: 0.08, 3: 0.12, 4: 0.06, 5: 0.07, 6: 0.02, 7: 0.02}
_HALVES = {
    1: "a half",
    2: "one",
    3: "one and a half",
    4: "two",
    5: "two and a half",
    6: "three",
    7: "three and a half",
    8: "four",
    9: "four and a half",
}
_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_PLURAL = (
    "zeros",
    "ones",
    "twos",
    "threes",
    "fours",
    "fives",
    "sixes",
    "sevens",
    "eights",
    "nines",
    "tens",
)


@dataclass
class Dive:
    """One synthetic dive.

    Attributes:
        position: 0 free, 1 pike, 2 tuck.
        armstand: 1 if it starts from an armstand.
        rotation_type: 0 back, 1 forward, 2 inward, 3 reverse.
        ss_no: 2 x the number of somersaults.
        tw_no: 2 x the number of twists.
        difficulty: Degree of difficulty.
        rotation_error: Entry error in degrees (> 0 over-rotated, < 0 short).
        splash: Splash size, 0 (none) to 1 (huge).
        judges: The seven judges' marks.
        final_score: Difficulty x sum of the middle three marks.
        lead: Frames from the window start to the start of the dive (timing variation).
        drift: Horizontal travel during the flight, as a fraction of the frame width.
        caption: The commentary, as words (without ``<sos>``/``<eos>``).
    """

    position: int
    armstand: int
    rotation_type: int
    ss_no: int
    tw_no: int
    difficulty: float
    rotation_error: float
    splash: float
    judges: tuple[float, ...] = ()
    final_score: float = 0.0
    lead: int = 0
    drift: float = 0.0
    caption: list[str] = field(default_factory=list)

    @property
    def execution(self) -> float:
        """The execution level the faults imply (before judging noise)."""
        return execution_level(self.rotation_error, self.splash)


def difficulty(position: int, armstand: int, rotation_type: int, ss_no: int, tw_no: int) -> float:
    """Degree of difficulty of a synthetic dive (a smooth stand-in for the FINA tables).

    Somersaults add 0.3 each, twists 0.2 each; pike and free positions, back, inward and
    reverse take-offs and armstands add a little. Clipped to 1.4-4.1 and rounded to 0.1.
    """
    dd = 1.9 + 0.15 * ss_no + 0.10 * tw_no
    dd += (0.2, 0.1, 0.0)[position]
    dd += (0.1, 0.0, 0.1, 0.2)[rotation_type]
    dd += 0.1 * armstand
    return round(float(np.clip(dd, 1.4, 4.1)), 1)


def execution_level(rotation_error: float, splash: float) -> float:
    """Execution (0-10) implied by the faults: 9.8 minus 0.08 per degree and 4.5 x splash."""
    return float(np.clip(9.8 - 0.08 * abs(rotation_error) - 4.5 * splash, 0.0, 10.0))


def judge(
    execution: float, dd: float, rng: np.random.Generator, n_judges: int = 7
) -> tuple[tuple[float, ...], float]:
    """Seven noisy marks (half points) and the final score from the middle three.

    Returns:
        ``(marks, final_score)``.
    """
    raw = execution + rng.normal(0.0, 0.3, size=n_judges)
    marks = np.clip(np.round(raw * 2) / 2, 0.0, 10.0)
    middle = np.sort(marks)[2:5] if n_judges == 7 else np.sort(marks)
    return tuple(float(m) for m in marks), round(float(dd * middle.sum()), 2)


def sample_dive(rng: np.random.Generator) -> Dive:
    """Draw one dive: its classes, faults, marks, score, timing and caption."""
    tw_no = int(rng.choice(list(_TW_WEIGHTS), p=list(_TW_WEIGHTS.values())))
    ss_no = int(rng.choice(list(_SS_WEIGHTS), p=list(_SS_WEIGHTS.values())))
    pos_p = (0.6, 0.25, 0.15) if tw_no else (0.15, 0.45, 0.40)
    position = int(rng.choice(3, p=pos_p))
    rotation_type = int(rng.integers(4))
    armstand = int(rng.random() < 0.15)
    dd = difficulty(position, armstand, rotation_type, ss_no, tw_no)
    rot_err = float(np.clip(rng.normal(0.0, 14.0), -40.0, 40.0))
    splash = float(np.clip(0.03 + 0.012 * abs(rot_err) + rng.uniform(0.0, 0.7), 0.02, 1.0))
    dive = Dive(
        position=position,
        armstand=armstand,
        rotation_type=rotation_type,
        ss_no=ss_no,
        tw_no=tw_no,
        difficulty=dd,
        rotation_error=round(rot_err, 2),
        splash=round(splash, 3),
        lead=int(rng.integers(0, 4)),
        drift=float(rng.uniform(0.0, 0.06)),
    )
    dive.judges, dive.final_score = judge(dive.execution, dd, rng)
    dive.caption = caption_words(dive)
    return dive


def _count(half_units: int, noun: str) -> list[str]:
    words = _HALVES[half_units].split()
    return [*words, noun if half_units <= 2 else noun + "s"]


def _number(value: float) -> list[str]:
    whole, tenth = divmod(round(value * 10), 10)
    return [_DIGITS[whole], "point", _DIGITS[tenth]]


def caption_words(d: Dive) -> list[str]:
    """Templated commentary describing the dive and its execution (lower case words)."""
    rotation = ROTATIONS[d.rotation_type]
    words = ["an" if rotation == "inward" else "a", rotation]
    words += _count(d.ss_no, "somersault") if d.ss_no else ["dive"]
    if d.tw_no:
        words += ["with", *_count(d.tw_no, "twist")]
    if d.armstand:
        words += ["from", "an", "armstand"]
    words += ["in", "the", POSITIONS[d.position], "position", "."]
    words += ["degree", "of", "difficulty", *_number(d.difficulty), "."]
    err = d.rotation_error
    if abs(err) < 6:
        words += ["the", "entry", "is", "perfectly", "vertical"]
    elif err > 0:
        words += ["slightly" if err < 20 else "badly", "over", "rotated", "on", "the", "entry"]
    else:
        words += ["slightly" if err > -20 else "well", "short", "on", "the", "entry"]
    size = ("hardly any", "a small", "a big", "a huge")[min(int(d.splash / 0.25), 3)]
    words += ["with", *size.split(), "splash", "."]
    execution = d.execution
    verdict = (
        "an excellent dive"
        if execution >= 8.5
        else "a good dive"
        if execution >= 7.0
        else "an average dive"
        if execution >= 5.5
        else "a poor dive"
    )
    words += ["that", "is", *verdict.split(), "and", "the", "judges", "give", "mostly"]
    words += [_PLURAL[int(np.floor(np.median(d.judges) + 0.5))], "."]
    return words
