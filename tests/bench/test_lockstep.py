"""The step-interleaved timing harness, with fake sampler runs that call ComfyUI's callback."""
import os
import threading
import time

import pytest

from benchmarks.lockstep import Runner, Timed, clean_seconds, pinned, run_lockstep


def fake_run(name, steps, log, work=0.0, fail_at=None):
    def run(callback):
        for i in range(steps):
            log.append((name, i))
            if work:
                time.sleep(work)
            if i == fail_at:
                raise ValueError(f"{name} failed at step {i}")
            callback(i, None, None, steps)
        log.append((name, "end"))
        return name
    return run


def run_with_deadline(runners, seconds=10):
    """run_lockstep in a thread, so that a hang fails the test instead of blocking it."""
    box = {}

    def target():
        try:
            box["result"] = run_lockstep(runners)
        except BaseException as e:  # noqa: BLE001
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "run_lockstep hung"
    if "error" in box:
        raise box["error"]
    return box["result"]


def test_turns_go_to_the_least_progressed_run():
    log = []
    results = run_with_deadline([Runner(fake_run("a", 2, log)), Runner(fake_run("b", 4, log)),
                                 Runner(fake_run("c", 4, log))])
    assert log == [("a", 0), ("b", 0), ("c", 0), ("b", 1), ("c", 1), ("a", 1), ("b", 2), ("c", 2),
                   ("b", 3), ("c", 3), ("a", "end"), ("b", "end"), ("c", "end")]
    assert [r.output for r in results] == ["a", "b", "c"]
    assert [len(r.segments) for r in results] == [3, 5, 5]  # one per step, plus the tear-down


@pytest.mark.timing   # compares wall-clock seconds of sleeping runs
def test_segments_hold_only_the_runs_own_time():
    log = []
    results = run_with_deadline([Runner(fake_run("slow", 4, log, work=0.03)),
                                 Runner(fake_run("fast", 4, log, work=0.005))])
    slow, fast = results
    assert all(s >= 0.03 for s in slow.segments[:4])
    assert fast.seconds < 0.5 * slow.seconds  # waiting for the other run (0.12 s of sleep) is not counted


def test_on_resume_runs_before_every_turn():
    log, resumed = [], []
    run_with_deadline([Runner(fake_run("a", 3, log), on_resume=lambda: resumed.append("a")),
                       Runner(fake_run("b", 3, log), on_resume=lambda: resumed.append("b"))])
    assert resumed == ["a", "b"] * 4  # three steps and the tear-down each


def test_a_failing_run_stops_all_and_its_error_is_raised():
    log = []
    with pytest.raises(ValueError, match="b failed at step 1"):
        run_with_deadline([Runner(fake_run("a", 5, log)), Runner(fake_run("b", 5, log, fail_at=1)),
                           Runner(fake_run("c", 5, log))])
    assert ("a", "end") not in log and ("c", "end") not in log


def test_clean_seconds_takes_each_steps_fastest_round():
    rounds = [Timed([1.0, 5.0, 1.0]), Timed([3.0, 2.0, 1.5]), Timed([2.0, 2.5, 0.5])]
    assert clean_seconds(rounds) == pytest.approx(1.0 + 2.0 + 0.5)
    with pytest.raises(ValueError, match="different numbers of steps"):
        clean_seconds([Timed([1.0, 2.0]), Timed([1.0])])


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_pinning_is_undone():
    before = os.sched_getaffinity(0)
    with pinned(1):
        assert len(os.sched_getaffinity(0)) == 1
    assert os.sched_getaffinity(0) == before
