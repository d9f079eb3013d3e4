// BlockDance in the ComfyUI frontend: every BlockDance Patch node carries a strip with one cell per
// sampling step and a line of headline numbers.
//  - After a run it draws the run record the engine sends (websocket event `blockdance.run`).
//  - Before a run (or after the settings changed) it draws the plan the server's core computes for
//    the connected sampler's step count (GET /blockdance/plan); nothing is re-derived here.
// The strip is a DOM widget, so it shows in the classic canvas and in the Nodes 2.0 (Vue) renderer.
// Its state is kept on the node (`node.blockdance.state`) for tools and tests to read. Where this
// extension draws the strip, the engine's progress text (the fallback for frontends without it) is
// taken off the node, so the numbers are not shown twice.
// BlockDance Calibrate and Ada Train show their report (the node's `text` output) on the node itself
// (`node.blockdanceReport`).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { findSampler, inputNode, samplerLabel, samplerQuery } from "./js/graph.js";
import { STYLE, MIN_WIDTH, STRIP_HEIGHT, createReportElement, createStripElement, fromMessage, fromPreview, fromRecord,
  passEventsToCanvas, renderReport, renderStrip } from "./js/strip.js";

const PATCH = "BlockDancePatch";
const LOADER = "BlockDanceScheduleLoader";
const EVENT = "blockdance.run";
const SETTINGS = ["mode", "depth", "N", "start_percent", "end_percent", "forecast"];
const REPORTING = ["BlockDanceCalibrate", "BlockDanceAdaTrain"];
const REPORT_HEIGHT = 150;
const REFRESH_MS = 300;
const PROGRESS_TEXT_WIDGET = "$$node-text-preview";   // the frontend's widget for a node's progress text

function widgetValue(node, name) {
  return node.widgets?.find((w) => w.name === name)?.value;
}

function isPatch(node) {
  return node?.comfyClass === PATCH || node?.type === PATCH;
}

function show(node, state) {
  node.blockdance.state = state;
  node.blockdance.shownKey = node.blockdance.key;   // the state drawn is the one for the current inputs
  renderStrip(node.blockdance.element, state);
  node.setDirtyCanvas?.(true, true);
}

function attachStrip(node) {
  if (node.blockdance) return;
  const element = createStripElement();
  const widget = node.addDOMWidget("blockdance_strip", "BLOCKDANCE_STRIP", element, {
    serialize: false, hideOnZoom: false, margin: 4,
    getMinHeight: () => STRIP_HEIGHT, getMaxHeight: () => STRIP_HEIGHT,
  });
  widget.serialize = false;   // not a node input: kept out of the workflow's widgets_values and the prompt
  node.blockdance = { element, widget, state: null, key: null, run: null, runs: 0, numBlocks: null,
    shownKey: undefined };
  passEventsToCanvas(element, () => app.canvas);
  keepMinWidth(node);
  show(node, fromMessage("connect a sampler to preview the plan"));
}

/** The strip needs MIN_WIDTH px for its headline: a new node opens at least that wide and cannot be
 * resized narrower. */
function keepMinWidth(node) {
  const computeSize = node.computeSize;
  node.computeSize = function (...args) {
    const size = computeSize.apply(this, args);
    return [Math.max(size[0], MIN_WIDTH), size[1]];
  };
  const onResize = node.onResize;
  node.onResize = function (size) {
    if (size && size[0] < MIN_WIDTH) size[0] = MIN_WIDTH;
    return onResize?.apply(this, arguments);
  };
  if (node.size[0] < MIN_WIDTH) node.setSize([MIN_WIDTH, node.size[1]]);
}

/** The engine also sends its numbers as the node's progress text, for frontends without this
 * extension; here the strip shows them, so the frontend's text widget is taken off the node. */
function dropProgressText(node) {
  const index = node.widgets?.findIndex((w) => w.name === PROGRESS_TEXT_WIDGET) ?? -1;
  if (index < 0) return;
  node.widgets[index].onRemove?.();
  node.widgets.splice(index, 1);
  fitSize(node);
  node.setDirtyCanvas?.(true, true);
}

function attachReport(node) {
  if (node.blockdanceReport) return;
  const element = createReportElement();
  const widget = node.addDOMWidget("blockdance_report", "BLOCKDANCE_REPORT", element, {
    serialize: false, hideOnZoom: false, margin: 4,
    getMinHeight: () => REPORT_HEIGHT, getMaxHeight: () => REPORT_HEIGHT,
  });
  widget.serialize = false;
  node.blockdanceReport = { element, widget, text: null };
  renderReport(element, null);
}

function onExecuted({ detail }) {
  const node = detail?.node != null ? nodeForExecutionId(detail.node) : null;
  const text = detail?.output?.text;
  if (!node?.blockdanceReport || !text) return;
  node.blockdanceReport.text = Array.isArray(text) ? text.join("\n") : String(text);
  renderReport(node.blockdanceReport.element, node.blockdanceReport.text);
  fitSize(node);
  node.setDirtyCanvas?.(true, true);
}

function fitSize(node) {
  const min = node.computeSize?.();
  if (min && (node.size[0] < min[0] || node.size[1] < min[1])) {
    node.setSize([Math.max(node.size[0], min[0]), Math.max(node.size[1], min[1])]);
  }
}

/** What the preview depends on: the node's settings (or the saved schedule it is given), the
 * connected sampler's step settings, and the block count a run reported. */
function currentInputs(node) {
  const policy = inputNode(node, "policy");
  const source = inputNode(node, "schedule");
  const scheduleName = !policy && source?.comfyClass === LOADER ? widgetValue(source, "schedule_name") : null;
  // A BlockDance-Ada policy decides per latent during the run; BlockDance Calibrate's schedule exists
  // once it has run: neither can be previewed.
  const fromRun = policy ? "policy" : source && scheduleName === null
    ? (source.comfyClass === "BlockDanceCalibrate" ? "calibration" : "schedule") : null;
  const sampler = fromRun ? null : findSampler(node);
  const query = sampler ? samplerQuery(sampler) : null;
  const settings = scheduleName ? { schedule_name: scheduleName }
    : Object.fromEntries(SETTINGS.map((name) => [name, widgetValue(node, name)]).filter(([, v]) => v !== undefined));
  const key = JSON.stringify([settings, fromRun, sampler?.id ?? null, query, node.blockdance.numBlocks]);
  return { key, settings, fromRun, sampler, query };
}

async function refresh(node) {
  const bd = node.blockdance;
  const inputs = currentInputs(node);
  if (inputs.key === bd.key) return;
  bd.key = inputs.key;
  if (bd.run && bd.run.key === inputs.key) return show(node, bd.run.state);
  if (inputs.fromRun) return show(node, fromMessage(`${inputs.fromRun} connected: plan drawn after a run`));
  if (!inputs.sampler) return show(node, fromMessage("connect a sampler to preview the plan"));
  const params = new URLSearchParams({ ...inputs.settings, ...inputs.query });
  if (bd.numBlocks && !inputs.settings.schedule_name) params.set("num_blocks", String(bd.numBlocks));
  try {
    const response = await api.fetchApi(`/blockdance/plan?${params}`);
    const body = await response.json();
    if (bd.key !== inputs.key) return;   // the settings moved on while the server answered
    show(node, response.ok ? fromPreview(body, samplerLabel(inputs.sampler, inputs.query))
      : fromMessage(body.error || `plan preview failed (${response.status})`, true));
  } catch (err) {
    if (bd.key === inputs.key) show(node, fromMessage(`plan preview failed: ${err}`, true));
  }
}

function patchNodes() {
  const graph = app.canvas?.graph ?? app.graph;
  return (graph?.nodes ?? []).filter((node) => node.blockdance);
}

function tick() {
  for (const node of patchNodes()) {
    dropProgressText(node);
    refresh(node);
  }
}

function onProgressText({ detail }) {
  const node = detail?.nodeId != null ? nodeForExecutionId(detail.nodeId) : null;
  if (node?.blockdance) setTimeout(() => dropProgressText(node), 0);   // after the frontend's own handler
}

/** The node an execution id names: "12", or "5:12" inside subgraph node 5. */
function nodeForExecutionId(id) {
  const parts = String(id).split(":");
  let graph = app.rootGraph ?? app.graph;
  let node = null;
  for (const part of parts) {
    node = graph?.getNodeById(part) ?? graph?.getNodeById(Number(part));
    if (!node) return null;
    graph = node.subgraph;
  }
  return node;
}

// The prompts this tab queued (the server sends `execution_start` only to the client that queued a
// prompt): a run event is drawn only when it belongs to one of them.
const ownPrompts = new Set();
const OWN_PROMPTS_KEPT = 64;

function onExecutionStart({ detail }) {
  if (!detail?.prompt_id) return;
  ownPrompts.add(detail.prompt_id);
  if (ownPrompts.size > OWN_PROMPTS_KEPT) ownPrompts.delete(ownPrompts.values().next().value);
}

function onRun({ detail }) {
  if (!detail?.prompt_id || !ownPrompts.has(detail.prompt_id)) return;
  const node = nodeForExecutionId(detail.node);
  if (!node?.blockdance) return;
  const bd = node.blockdance;
  bd.numBlocks = detail.record.num_blocks;
  bd.runs += 1;
  const state = fromRecord(detail.record, detail.line);
  bd.run = { key: currentInputs(node).key, state, record: detail.record };
  bd.key = bd.run.key;
  show(node, state);
}

app.registerExtension({
  name: "blockdance.strip",
  async setup() {
    const style = document.createElement("style");
    style.textContent = STYLE;
    document.head.appendChild(style);
    api.addEventListener("execution_start", onExecutionStart);
    api.addEventListener(EVENT, onRun);
    api.addEventListener("executed", onExecuted);
    api.addEventListener("progress_text", onProgressText);
    setInterval(tick, REFRESH_MS);
  },
  nodeCreated(node) {
    if (isPatch(node)) attachStrip(node);
    if (REPORTING.includes(node?.comfyClass ?? node?.type)) attachReport(node);
  },
  loadedGraphNode(node) {
    if (node.blockdance || node.blockdanceReport) fitSize(node);
  },
});
