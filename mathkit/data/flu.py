"""The 1978 influenza outbreak in an English boarding school.

A note in the British Medical Journal :cite:p:`bmj1978influenza` reported an
outbreak of influenza A (H1N1) at a boys' boarding school in the north of
England: 763 boys, of whom 512 were confined to bed at some point, starting
from a single index case. The daily counts below, from 22 January to 4 February
1978, are the series the note published and that textbooks of mathematical
biology have fitted with the SIR model ever since.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BoardingSchoolFlu", "boarding_school_flu"]

_IN_BED = (3, 8, 26, 76, 225, 298, 258, 233, 189, 128, 68, 29, 14, 4)
_CONVALESCENT = (0, 0, 0, 0, 9, 17, 105, 162, 176, 166, 150, 85, 47, 20)
_SOURCE = (
    'Anonymous (1978). "Influenza in a boarding school". '
    "British Medical Journal 1(6112):587."
)


@dataclass(frozen=True)
class BoardingSchoolFlu:
    """Daily counts of the outbreak (integer arrays of shape ``(14,)``).

    Attributes:
        day: day of the outbreak, 1 (22 January 1978) to 14 (4 February).
        in_bed: boys confined to bed that day (the prevalence of illness).
        convalescent: boys out of bed but not yet back in class.
        population: boys in the school, 763.
        source: the publication the counts come from.
    """

    day: np.ndarray
    in_bed: np.ndarray
    convalescent: np.ndarray
    population: int
    source: str


def boarding_school_flu() -> BoardingSchoolFlu:
    """The 1978 boarding-school influenza outbreak (BMJ 1978; 763 boys, one index case).

    Returns fresh, read-only arrays, so callers cannot alter the shipped data.
    """

    def frozen(values: tuple[int, ...]) -> np.ndarray:
        array = np.array(values, dtype=np.int64)
        array.setflags(write=False)
        return array

    return BoardingSchoolFlu(
        day=frozen(tuple(range(1, len(_IN_BED) + 1))),
        in_bed=frozen(_IN_BED),
        convalescent=frozen(_CONVALESCENT),
        population=763,
        source=_SOURCE,
    )
