"""The forecasting peers compute the steps their authors' code computes (the step lists below are
what the authors' schedules give at 50 steps, read from their published code's logic)."""
from benchmarks.peers import spectrum_computes, taylorseer_computes


def computed(mask):
    return [k for k, c in enumerate(mask) if c]


def test_spectrum_window_schedule_at_the_authors_settings():
    assert computed(spectrum_computes(50, 0.75)) == [0, 1, 2, 3, 4, 6, 8, 11, 15, 20, 25, 31, 38, 46]
    assert computed(spectrum_computes(50, 3.0)) == [0, 1, 2, 3, 4, 6, 11, 19, 30, 44]


def test_spectrum_computes_less_as_alpha_grows():
    counts = [sum(spectrum_computes(30, a)) for a in (0.0, 0.25, 0.75, 1.5, 3.0, 6.0)]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]


def test_taylorseer_fixed_interval_after_its_warm_up():
    assert computed(taylorseer_computes(50, 6)) == [0, 1, 2, 8, 14, 20, 26, 32, 38, 44]
    assert computed(taylorseer_computes(10, 2)) == [0, 1, 2, 4, 6, 8]
