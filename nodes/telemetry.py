"""Where a finished run's record goes: the `BlockDance:` log line (a contract other tools parse), the
node's text in the UI, a websocket event with the per-step record for the web extension, the
sampled clone's receiver (the pack's own callers: calibration, Ada training) and any in-process
listener (tests, benchmarks).

The node text and the event go only to the client that queued the prompt, with its prompt id, as
ComfyUI's own `executed` messages do: another tab or user of the same server never sees the run."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, List, Optional

from ..blockdance_core import RunRecord

logger = logging.getLogger("BlockDance")
EVENT = "blockdance.run"
_listeners: List[Callable[["RunReport"], None]] = []


@dataclass
class RunReport:
    description: object   # PatchDescription
    record: RunRecord
    line: str


RECEIVER_KEY = "blockdance_receiver"   # model_options["transformer_options"][...]: a clone's Receiver


class Receiver:
    """Where the reports of the runs sampled with one clone go (see `receiving`). Shared, not copied,
    by the model-options copies ComfyUI makes inside a run."""

    def __init__(self):
        self.reports: List[RunReport] = []

    def __deepcopy__(self, memo):
        return self

    @property
    def last(self) -> "RunReport":
        return self.reports[-1]


def receiving(model):
    """(clone of a patched model, its Receiver): every run sampled with the clone hands its report
    (record, and the policy run's result on `record.result`) to that receiver and to no other, so
    clones of one patched model sampled at once each get their own."""
    clone = model.clone()
    receiver = Receiver()
    clone.model_options.setdefault("transformer_options", {})[RECEIVER_KEY] = receiver
    return clone, receiver


@contextmanager
def recorded_runs():
    """Collect the report of every sampler run that ends inside the block."""
    reports: List[RunReport] = []
    _listeners.append(reports.append)
    try:
        yield reports
    finally:
        _listeners.remove(reports.append)


def headline(record: RunRecord) -> str:
    return (f"reused {len(record.steps_reused)}/{record.num_steps} · ideal {record.ideal_speedup:.2f}x · "
            f"cache {record.cache_peak_bytes / 2**20:.1f} MB")


def report(description, record: RunRecord, receiver: Optional[Receiver] = None) -> str:
    line = description.log_line(record)
    logger.info(line)
    for note in record.notes:
        logger.warning("BlockDance: %s", note)
    run_report = RunReport(description, record, line)
    if receiver is not None:
        receiver.reports.append(run_report)
    for listener in list(_listeners):
        listener(run_report)
    if description.node_id is not None:
        _send_to_ui(description.node_id, record, line)
    return line


def _send_to_ui(node_id: str, record: RunRecord, line: str) -> None:
    try:
        from server import PromptServer  # ComfyUI's server; absent when ComfyUI runs in-process
        instance = getattr(PromptServer, "instance", None)
    except ImportError:
        return
    client = getattr(instance, "client_id", None) if instance is not None else None
    if client is None:   # no server, or a prompt queued without a client id: nobody to show it to
        return
    try:
        text = "\n".join([headline(record), line.replace("BlockDance: ", ""), *record.notes])
        instance.send_progress_text(text, node_id, client)
        instance.send_sync(EVENT, {"node": str(node_id), "prompt_id": _prompt_id(instance), "line": line,
                                   "record": record.to_dict()}, client)
    except Exception as err:  # the UI is a courtesy; never fail a finished run over it
        logger.debug("BlockDance: could not show the run on node %s: %s", node_id, err)


def _prompt_id(instance):
    """The prompt this run belongs to: the executing node's context where core has one, else the
    prompt the server last started (ComfyUI runs one prompt at a time)."""
    try:
        from comfy_execution.utils import get_executing_context
        context = get_executing_context()
        if context is not None and context.prompt_id:
            return context.prompt_id
    except ImportError:
        pass
    return getattr(instance, "last_prompt_id", None)
