"""mathkit.data.boarding_school_flu: the shipped 1978 outbreak."""

import numpy as np
import pytest

from mathkit.data import boarding_school_flu


def test_counts_as_published():
    flu = boarding_school_flu()
    assert flu.population == 763 and "British Medical Journal" in flu.source
    np.testing.assert_array_equal(flu.day, np.arange(1, 15))
    assert flu.in_bed.shape == flu.convalescent.shape == (14,)
    # the peak: 298 boys in bed on 27 January, day 6
    assert flu.in_bed.argmax() == 5 and flu.in_bed.max() == 298
    assert flu.in_bed[0] == 3 and flu.convalescent[:4].sum() == 0
    assert ((flu.in_bed + flu.convalescent) <= flu.population).all()


def test_arrays_are_read_only_and_fresh():
    flu = boarding_school_flu()
    with pytest.raises(ValueError):
        flu.in_bed[0] = 0
    assert boarding_school_flu().in_bed is not flu.in_bed
