"""The web extension in the real ComfyUI frontend, in headless Chromium (Debian's, driven by
Playwright's Python package): every example workflow loads through the frontend's own loader with no
missing nodes, converts to the same prompt as tests/browser/bd_workflows.py, opens below the top bar
and shows a plan preview on each BlockDance Patch; a tiny SD3 graph run from the Run button puts the
run record's strip and headline numbers on the node, in the classic canvas and in Nodes 2.0.

Frontends: the one the host pins (its comfyui-frontend-package), and every static root named in
BLOCKDANCE_FRONTEND_ROOTS (os.pathsep-separated), served with ComfyUI's --front-end-root; CI names
the newest comfyui-frontend-package there (.ci/run).

A host test: CI installs Chromium and Playwright (.ci/run) and fails if this skips; elsewhere it
skips saying what is missing. Screenshots go to out/browser/ (BLOCKDANCE_UPDATE_DOCS=1 also writes
assets/screenshot_node.png, the README's screenshot).
"""
import os
import shutil
import sys

import pytest

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "browser"))
import bd_browser  # noqa: E402
import bd_server  # noqa: E402
import bd_workflows  # noqa: E402
import bd_examples as examples  # noqa: E402

ROOT = bd_server.PACK_ROOT
ARTIFACTS = os.path.join(ROOT, "out", "browser")
RUN_KINDS = ["full"] * 4 + ["cache", "reuse"] * 3   # 10 simple steps, window 0.40-0.95, N=2

STATES = """() => app.graph.nodes.filter((n) => n.blockdance).map((n) => ({
  id: String(n.id), title: n.title, state: n.blockdance.state, runs: n.blockdance.runs,
  record: n.blockdance.run?.record ?? null,
  settled: n.blockdance.key !== null && n.blockdance.shownKey === n.blockdance.key,
  text: n.blockdance.element.innerText, cells: n.blockdance.element.querySelectorAll('.bd-cell').length,
  progress: window.bdProgressText?.[String(n.id)] ?? null }))"""
# The engine's progress text per node as the server sent it (the api's progress_text event): frontend 1.58
# clears its own text-preview widget when the job ends, so the widget cannot be read after a run.
WATCH_PROGRESS_TEXT = """() => { if (window.bdProgressText) return;
  window.bdProgressText = {};
  app.api.addEventListener('progress_text', (e) => { window.bdProgressText[String(e.detail.nodeId)] = e.detail.text; }); }"""

TITLES_BELOW_TOP_BAR = """() => {
  const bars = ['.workflow-tabs-container', '.actionbar-container', '.subgraph-breadcrumb']
    .flatMap((s) => [...document.querySelectorAll(s)]).map((e) => e.getBoundingClientRect().bottom);
  const barBottom = Math.max(...bars);
  const canvas = app.canvas.canvas.getBoundingClientRect();
  const titleHeight = LiteGraph.NODE_TITLE_HEIGHT;
  const tops = app.graph.nodes.map((n) => [n.id, canvas.top + app.canvas.ds.convertOffsetToCanvas([n.pos[0], n.pos[1] - titleHeight])[1]]);
  return { barBottom, bars: bars.length, hidden: tops.filter(([, top]) => top < barBottom) };
}"""


FRONTENDS = ["pinned", *[root for root in os.environ.get("BLOCKDANCE_FRONTEND_ROOTS", "").split(os.pathsep) if root]]


def frontend_id(root):
    return "pinned" if root == "pinned" else f"frontend-{bd_browser.frontend_version(root)}"


@pytest.fixture(scope="module", params=FRONTENDS, ids=frontend_id)
def server(comfy, tiny, tmp_path_factory, request):
    reason = bd_browser.unavailable_reason()
    if reason:
        pytest.skip(f"browser test: {reason}")
    root = request.param
    if root != "pinned" and not os.path.isfile(os.path.join(root, "index.html")):
        raise AssertionError(f"BLOCKDANCE_FRONTEND_ROOTS names {root}, which holds no frontend (no index.html)")
    extra = () if root == "pinned" else ("--front-end-root", root)
    srv = bd_server.ComfyServer(comfy, str(tmp_path_factory.mktemp("browser")), extra_args=extra,
                                settings=bd_browser.SETTINGS)
    try:
        bd_server.write_tiny_models(tiny, srv.models_dir, srv.base, families={"sd3"})
        write_schedule(srv.schedules_dir)
        srv.wait_ready()
        srv.object_info = srv.get("/object_info")
        srv.frontend = bd_browser.frontend_version(root)
        yield srv
    finally:
        srv.stop()


def write_schedule(folder):
    """The saved schedule the load-schedule example names: 20 steps, reuse at two depths (2 and 3 of 5
    blocks skipped), so the preview must show depths that vary."""
    from benchmarks.comfy_env import PACK_MODULE, load_pack
    load_pack()
    calibrated = sys.modules[PACK_MODULE + ".blockdance_core.schedule"]
    plan = [("full", 0)] * 10 + [("cache", 2), ("reuse", 2)] * 2 + [("cache", 3), ("reuse", 3)] * 2 + [("full", 0)] * 2
    steps = tuple(calibrated.ScheduleStep(position=k / 20, sigma=1 - k / 20, kind=kind, cut=cut,
                                          mode="blockdance" if cut else "") for k, (kind, cut) in enumerate(plan))
    calibrated.Schedule(name="browser-test", family="flux", num_blocks=5, width=128, steps=steps, target_speedup=1.2,
                        predicted_speedup=1.2, predicted_error=0.0).save(os.path.join(folder, examples_schedule_name()))


def examples_schedule_name():
    wf = examples.build("blockdance_load_schedule")
    (loader,) = [n for n in wf["nodes"] if n["type"] == "BlockDanceScheduleLoader"]
    return loader["widgets_values"][0]


@pytest.fixture(scope="module")
def page(server):
    with bd_browser.open_page(server.url) as page:
        served = page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__ ?? null")
        print(f"[browser] frontend {served} served by ComfyUI {server.get('/system_stats')['system']['comfyui_version']}")
        assert served == server.frontend, f"the page runs frontend {served}, not the expected {server.frontend}"
        yield page
    assert not page.errors, page.errors


def states(page):
    return {s["id"]: s for s in page.evaluate(STATES)}


def wait_states(page, predicate, timeout=20000):
    page.wait_for_function(f"() => ({STATES})().length && ({STATES})().every((s) => {predicate})", timeout=timeout)
    return states(page)


@pytest.mark.parametrize("name", list(examples.EXAMPLES))
def test_example_loads_in_the_frontend(server, page, name):
    missing = bd_browser.load_template(page, bd_server.PACK_DIR_NAME, name)
    assert missing == [] and bd_browser.open_dialogs(page) == []
    wf = examples.build(name)
    queued = page.evaluate("async () => (await app.graphToPrompt()).output")
    assert {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in queued.items()} == \
        bd_workflows.to_api(wf, server.object_info)
    view = page.evaluate(TITLES_BELOW_TOP_BAR)
    assert view["bars"] >= 2 and view["hidden"] == [], view
    patches = wait_states(page, "s.settled")
    assert sorted(patches) == sorted(str(n["id"]) for n in wf["nodes"] if n["type"] == "BlockDancePatch")
    for patch in patches.values():
        state = patch["state"]
        if name == "blockdance_calibrate_then_patch":
            assert state["source"] == "none" and "calibration" in state["headline"]
            continue
        if name in ("blockdance_ada_train_then_patch", "blockdance_ada_policy"):   # decided per latent in the run
            assert state["source"] == "none" and "connected policy" in state["headline"], state
            continue
        assert state["source"] == "preview", state
        assert patch["cells"] == len(state["cells"]) == steps_of_sampler(queued, patch["id"])
        assert "evenly spaced" in patch["text"] and state["headline"].startswith("plan: reuse ")
        if name == "blockdance_load_schedule":   # the saved schedule's own depths, at its own block count
            assert state["numBlocks"] == 5 and state["depths"] == [0.4, 0.6], state


def steps_of_sampler(prompt, patch_id):
    """Steps the sampler fed by a patch runs: KSampler steps, KSamplerAdvanced's slice, BasicScheduler
    or LTXVScheduler steps."""
    users = [n for n in prompt.values() if any(v == [patch_id, 0] for v in n["inputs"].values())]
    for node in users:
        inputs = node["inputs"]
        if node["class_type"] == "KSamplerAdvanced":
            return min(inputs["end_at_step"], inputs["steps"]) - inputs["start_at_step"]
        if "steps" in inputs:
            return inputs["steps"]
        if "sigmas" in inputs:
            return prompt[inputs["sigmas"][0]]["inputs"]["steps"]
    raise AssertionError(f"no sampler fed by {patch_id}")


def run_from_button(page, patch_id, runs_before):
    # Newer frontends (1.49 on) also name the run-mode menu beside it "Run": take the queue button by its
    # test id where the frontend has one.
    page.evaluate(WATCH_PROGRESS_TEXT)
    queue_button = page.locator('[data-testid="queue-button"]')
    (queue_button if queue_button.count() else page.get_by_role("button", name="Run", exact=True)).click()
    page.wait_for_function(f"() => ({STATES})().find((s) => s.id === '{patch_id}').runs > {runs_before}", timeout=60000)
    return states(page)[patch_id]


def test_run_button_puts_the_run_record_on_the_node(server, page):
    bd_browser.load_graph(page, examples.tiny_sd3_graph(bd_server.conditioning_folder("sd3")), "tiny sd3")
    (patch_id,) = wait_states(page, "s.settled")
    preview = states(page)[patch_id]
    assert [c["kind"] for c in preview["state"]["cells"]] == RUN_KINDS   # the core's plan, before any run

    patch = run_from_button(page, patch_id, preview["runs"])
    state = patch["state"]
    assert state["source"] == "run"
    assert [c["kind"] for c in state["cells"]] == RUN_KINDS == [c["planned"] for c in state["cells"]]
    record = patch["record"]
    assert state["headline"] == f"reused 3/10 · ideal 1.29x · cache {record['cache_peak_bytes'] / 2**20:.1f} MB"
    assert record["reused"] == 3 and record["blocks_skipped"] == 9 and record["cache_peak_bytes"] > 0
    assert state["numBlocks"] == 4 and state["depths"] == [0.75, 0.75] and state["line"].startswith("BlockDance: family=sd3")
    assert patch["cells"] == 10 and state["headline"] in patch["text"]
    # The engine's text for the node (send_progress_text, the fallback without this extension) leads with
    # the same numbers.
    assert patch["progress"].splitlines()[0] == state["headline"]
    assert bd_browser.open_dialogs(page) == []
    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = os.path.join(ARTIFACTS, "screenshot_node.png")
    page.screenshot(path=shot, clip=graph_clip(page))
    if os.environ.get("BLOCKDANCE_UPDATE_DOCS") == "1":
        shutil.copy(shot, os.path.join(ROOT, "assets", "screenshot_node.png"))


def graph_clip(page):
    return page.evaluate("""() => {
      const c = app.canvas.canvas.getBoundingClientRect(), ds = app.canvas.ds, t = LiteGraph.NODE_TITLE_HEIGHT;
      const xs = [], ys = [];
      for (const n of app.graph.nodes) {
        const [x0, y0] = ds.convertOffsetToCanvas([n.pos[0], n.pos[1] - t]);
        const [x1, y1] = ds.convertOffsetToCanvas([n.pos[0] + n.size[0], n.pos[1] + n.size[1]]);
        xs.push(x0, x1); ys.push(y0, y1);
      }
      const x = Math.max(0, c.left + Math.min(...xs) - 16), y = Math.max(0, c.top + Math.min(...ys) - 16);
      return { x, y, width: Math.min(innerWidth - x, Math.max(...xs) - Math.min(...xs) + 32),
               height: Math.min(innerHeight - y, Math.max(...ys) - Math.min(...ys) + 32) };
    }""")


def test_strip_in_the_nodes_2_renderer(server, page):
    """Nodes 2.0 (Vue) draws nodes as DOM: the same strip element sits inside the node, and a new run
    from the Run button updates it."""
    graph = examples.tiny_sd3_graph(bd_server.conditioning_folder("sd3"), seed=1000)   # not a prompt run before
    bd_browser.load_graph(page, graph, "tiny sd3 vue")
    (patch_id,) = wait_states(page, "s.settled")
    page.evaluate("() => app.extensionManager.setting.set('Comfy.VueNodes.Enabled', true)")
    try:
        strip = page.locator(f'[data-node-id="{patch_id}"] .blockdance-strip')
        strip.wait_for(state="visible", timeout=20000)
        patch = run_from_button(page, patch_id, states(page)[patch_id]["runs"])
        assert patch["state"]["source"] == "run" and patch["state"]["headline"].startswith("reused 3/10 · ideal 1.29x")
        assert strip.locator(".bd-cell").count() == 10 and strip.locator(".bd-cell.bd-reuse").count() == 3
        assert strip.locator(".bd-headline").inner_text() == patch["state"]["headline"]
        box = strip.bounding_box()
        assert box and box["width"] > 100 and box["height"] >= 30
        page.screenshot(path=os.path.join(ARTIFACTS, "screenshot_node_vue.png"), clip=graph_clip(page))
    finally:
        page.evaluate("() => app.extensionManager.setting.set('Comfy.VueNodes.Enabled', false)")


def test_a_typed_value_out_of_range_is_an_error_on_the_strip(server, page):
    """The depth widget lets a user type 0; the strip says what is wrong instead of drawing a clamped plan."""
    bd_browser.load_graph(page, examples.tiny_sd3_graph(bd_server.conditioning_folder("sd3")), "tiny sd3 typed")
    (patch_id,) = wait_states(page, "s.settled")
    set_depth = "(v) => { const n = app.graph.getNodeById(%s); const w = n.widgets.find((w) => w.name === 'depth');" \
                " w.value = v; w.callback?.(v); }" % patch_id
    page.evaluate(set_depth, 0)
    page.wait_for_function(f"() => ({STATES})()[0].state.source === 'error'", timeout=10000)
    state = states(page)[patch_id]["state"]
    assert state["headline"] == "depth=0.0 is outside (0, 1]" and state["cells"] == [], state
    assert state["note"].startswith("it is the fraction of the block stack skipped")
    page.evaluate(set_depth, 0.5)
    page.wait_for_function(f"() => ({STATES})()[0].state.source === 'preview'", timeout=10000)
    assert {c["depth"] for c in states(page)[patch_id]["state"]["cells"] if c["kind"] == "reuse"} == {0.5}
