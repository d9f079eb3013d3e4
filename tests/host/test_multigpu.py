"""BlockDance under ComfyUI core's multi-GPU CFG split (issue #15, item 4).

Core (>= 0.33: comfy_extras/nodes_multigpu.py, `_calc_cond_batch_multigpu` in comfy/samplers.py) gives
each device a model copy and runs the conditioning chunks of one evaluation on them in a thread pool
(`comfy.multigpu.MultiGPUThreadPool`); every forward's transformer_options is merged from the one
model_options, so all of them share one BlockDance run. Here the two "devices" are cpu and cpu:1 (two
keys for one CPU), the second holding its own copy of the tiny model:

- where core has the split, core's own code runs it: the copy is registered as core's multigpu clone,
  so `outer_sample` makes the thread pool and `_calc_cond_batch_multigpu` dispatches to it; the serial
  run is the same split with the pool taken away, which core then runs on the calling thread;
- where it does not (v0.8.0), a CALC_COND_BATCH wrapper does what `_calc_cond_batch_multigpu` does:
  conditioning i goes to device i's model, each in a pool thread, through core's own `_calc_cond_batch`
  over the shared model_options (serial: the same on the calling thread).

A barrier inside BlockDance's APPLY_MODEL wrapper holds each threaded forward until the other has begun,
so both are in flight at once whenever a block runs.
"""
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import torch

from blockdance_core.tree import tree_leaves

from helpers import patch, sample_recorded, spy_runs

DEVICES = (torch.device("cpu"), torch.device("cpu", 1))
POOL_KEY = "multigpu_thread_pool"
TEST_KEY = "blockdance-test-multigpu"


def core_has_split() -> bool:
    import comfy.samplers
    return hasattr(comfy.samplers, "_calc_cond_batch_multigpu")


@pytest.fixture(scope="module")
def tiny_and_copy(tiny):
    """family -> a tiny model and the second device's own copy of it (same seed, so the same weights;
    another module), built once per module and dropped with it."""
    built = {}

    def get(family):
        if family not in built:
            built[family] = (tiny.build(family, seed=0), tiny.build(family, seed=0).patcher)
        return built[family]

    yield get
    built.clear()


def watched(model, forwards, barrier):
    """`model` with an APPLY_MODEL wrapper inside BlockDance's that notes (thread, device, chunks) of each
    forward and, with a barrier, waits there until the evaluation's other forward has begun too."""
    import comfy.patcher_extension as ext

    def wrapper(executor, *args, **kwargs):
        options = args[5] if len(args) > 5 else kwargs["transformer_options"]
        forwards.append((threading.get_ident(), options.get("multigpu_thread_device"), tuple(options["uuids"])))
        if barrier is not None:
            barrier.wait()
        return executor(*args, **kwargs)

    model = model.clone()
    model.add_wrapper_with_key(ext.WrappersMP.APPLY_MODEL, TEST_KEY, wrapper)
    return model


def _without_pool(executor, model, conds, x_in, timestep, model_options):
    """Core's serial fallback: with no thread pool `_calc_cond_batch_multigpu` runs each device's batch
    on the calling thread, on that device's model."""
    pool = model_options.pop(POOL_KEY, None)
    try:
        return executor(model, conds, x_in, timestep, model_options)
    finally:
        if pool is not None:
            model_options[POOL_KEY] = pool


def _split_like_core(device_models, pool):
    """Where core has no multi-GPU split: what `_calc_cond_batch_multigpu` does for one chunk per device.
    Conditioning i runs on device_models[i] (in a pool thread, or on the calling thread without a pool)
    through core's `_calc_cond_batch`, over the model_options every forward shares."""
    def wrapper(executor, model, conds, x_in, timestep, model_options):
        def one(i):
            only = [c if j == i else None for j, c in enumerate(conds)]
            return executor(device_models[i] if i else model, only, x_in, timestep, model_options)[i]
        chunks = range(len(conds))
        return list(pool.map(one, chunks)) if pool is not None else [one(i) for i in chunks]
    return wrapper


@contextmanager
def _no_pool():
    yield None


@contextmanager
def split_across_devices(model, copy, threaded):
    """`model` split over cpu and cpu:1 (`copy` runs the second device's chunk), threaded or serially."""
    import comfy.patcher_extension as ext
    split = model.clone()
    if core_has_split():
        copy = copy.clone()
        copy.load_device, copy.is_multigpu_base_clone = DEVICES[1], True
        split.set_additional_models("multigpu", [copy])
        if not threaded:
            split.add_wrapper_with_key(ext.WrappersMP.CALC_COND_BATCH, TEST_KEY, _without_pool)
        yield split
        return
    with ThreadPoolExecutor(len(DEVICES)) if threaded else _no_pool() as pool:
        split.add_wrapper_with_key(ext.WrappersMP.CALC_COND_BATCH, TEST_KEY, _split_like_core([None, copy.model], pool))
        copy.pre_run()   # its model's current_patcher, as core's outer_sample sets for its multigpu clones
        try:
            yield split
        finally:
            copy.cleanup()


def sample_split(pack, model, tm, copy, threaded, steps=8):
    """Sample through the split; returns output, record, the forwards seen and, after each step, the
    run's cache entries as (chunk, device of its features)."""
    forwards, entries = [], []
    barrier = threading.Barrier(len(DEVICES), timeout=60) if threaded else None
    with split_across_devices(watched(model, forwards, barrier), copy, threaded) as split:
        runs = spy_runs(split)

        def keep(step, *rest):
            cache = runs[-1].cache
            entries.append({key: {t.device for t in tree_leaves(cache.entry(key).features)} for key in cache.keys()})

        out, record = sample_recorded(pack, split, tm, steps=steps, callback=keep)
    return out, record, forwards, entries


# Flux: blocks hooked through patches_replace; Lumina 2: through the container swap (a proxy per device's
# model); Wan VACE: a side branch kept at the cache step and replayed.
@pytest.mark.parametrize("family, mode", [("flux", "blockdance"), ("flux", "delta"), ("lumina2", "blockdance"),
                                          ("wan_vace", "blockdance")])
def test_parallel_devices_match_the_serial_split_bit_for_bit(pack, tiny_and_copy, family, mode):
    tm, device_copy = tiny_and_copy(family)
    model = patch(pack, tm.patcher, mode=mode, depth=0.75, N=2, start_percent=0.0, end_percent=1.0)
    serial, serial_record, serial_forwards, _ = sample_split(pack, model, tm, device_copy, threaded=False)
    out, record, forwards, entries = sample_split(pack, model, tm, device_copy, threaded=True)

    assert len({thread for thread, _, _ in forwards}) == 2   # the chunks really ran on two threads
    assert len({thread for thread, _, _ in serial_forwards}) == 1
    if core_has_split():
        assert {device for _, device, _ in forwards} == set(DEVICES)
    assert all(len(chunks) == 1 for _, _, chunks in forwards)   # one chunk per device and forward
    assert torch.equal(out, serial)
    assert record.to_dict() == serial_record.to_dict()
    assert record.steps_reused == {1, 3, 5, 7}
    assert all(record.steps[k].reused_calls == 2 for k in record.steps_reused)   # each device reused its own
    chunks = {chunk for _, _, (chunk,) in forwards}
    assert len(chunks) == 2 and set(entries[-1]) == chunks   # a cache entry per chunk, never a shared one
    assert all(devices == {torch.device("cpu")} for devices in entries[-1].values())   # nothing moved them
