"""The end-of-run `BlockDance:` log line, also shown on the node in the UI."""
from __future__ import annotations

import logging

logger = logging.getLogger("BlockDance")


def report(holder, stats) -> str:
    line = holder.log_line(stats)
    logger.info(line)
    if holder.node_id is not None:
        _show_on_node(holder.node_id, line)
    return line


def _show_on_node(node_id: str, line: str) -> None:
    try:
        from server import PromptServer  # ComfyUI's server; absent when ComfyUI runs in-process
        instance = getattr(PromptServer, "instance", None)
    except ImportError:
        return
    if instance is None:
        return
    try:
        instance.send_progress_text(line.replace("BlockDance: ", "").replace(" ", "\n"), node_id)
    except Exception as err:  # the UI text is a courtesy; never fail a finished run over it
        logger.debug("BlockDance: could not show stats on node %s: %s", node_id, err)
