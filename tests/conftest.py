"""Make the repository importable for tests without shadowing ComfyUI's own top-level `nodes`.

The repo root is appended (not prepended) to sys.path: `blockdance_core` and `benchmarks` resolve
here, while `nodes` resolves to ComfyUI once the host tests put ComfyUI first. The pack itself is
imported the way ComfyUI imports custom nodes (tests/host/conftest.py).
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.append(ROOT)
# Test helpers (toy_dit, helpers) are plain modules beside the tests (import mode is importlib).
for sub in ("core", "host"):
    sys.path.append(os.path.join(ROOT, "tests", sub))

os.environ.setdefault("OMP_NUM_THREADS", "1")
try:
    import torch
    torch.set_num_threads(1)
except ImportError:  # the README's test command installs torch; a bare interpreter says so below
    pass


# Host tests are those under tests/host/. CI sets BLOCKDANCE_REQUIRE_HOST=1: then a skipped host test,
# or none having run, fails the session, and the summary says how many ran.
_HOST_OUTCOMES = {"passed": 0, "failed": 0, "skipped": 0}


def _is_host(nodeid: str) -> bool:
    path = nodeid.split("::")[0].replace(os.sep, "/")
    return path.startswith("host/") or "/host/" in path


def pytest_runtest_logreport(report):
    if not _is_host(report.nodeid):
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _HOST_OUTCOMES[report.outcome] += 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    o = _HOST_OUTCOMES
    terminalreporter.write_line(f"host tests (real ComfyUI): {o['passed']} passed, {o['failed']} failed, "
                                f"{o['skipped']} skipped")


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("BLOCKDANCE_REQUIRE_HOST") != "1":
        return
    if _HOST_OUTCOMES["skipped"] or not _HOST_OUTCOMES["passed"]:
        print(f"\nBLOCKDANCE_REQUIRE_HOST=1: host tests must run, not skip "
              f"({_HOST_OUTCOMES['passed']} passed, {_HOST_OUTCOMES['skipped']} skipped)")
        session.exitstatus = 1
