// The strip drawn on a BlockDance Patch node: one cell per sampling step (computed / cached / reused,
// filled to the fraction of the stack a reuse skipped) and one line of headline numbers.
// Pure DOM, no ComfyUI imports: it turns a run record (the `blockdance.run` event) or a plan preview
// (GET /blockdance/plan) into a state object and draws that state. Nothing here derives a plan.

const KINDS = ["full", "cache", "reuse"];
const LABELS = { full: "computed", cache: "computed, features cached", reuse: "reused" };

/** The node width the headline needs (two lines at most); a BlockDance Patch is never narrower. */
export const MIN_WIDTH = 320;
/** The strip's height: cells, a headline of up to two lines, a note of up to two lines. */
export const STRIP_HEIGHT = 100;

// Sizes chosen to stay readable at the example workflows' 59-70% zoom (15 px -> 9-10 px on screen).
// The strip keeps pointer events for the cells' hover text and forwards wheel and drag to the canvas
// (passEventsToCanvas): the frontend's DOM-widget layer would otherwise swallow them.
export const STYLE = `
.blockdance-strip { display: flex; flex-direction: column; gap: 4px; padding: 2px 4px 4px; box-sizing: border-box;
  font: 15px/18px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; color: var(--input-text, #ddd);
  pointer-events: auto; overflow: hidden; width: 100%; min-width: 0; }
.blockdance-strip .bd-cells { display: flex; gap: 1px; height: 18px; flex: none; align-items: stretch; }
.blockdance-strip .bd-cell { flex: 1 1 0; min-width: 2px; position: relative; border-radius: 2px; background: #4b5563; }
.blockdance-strip .bd-cell.bd-cache { background: #2563eb; }
.blockdance-strip .bd-cell.bd-reuse { background: #1f3b2a; }
.blockdance-strip .bd-cell.bd-reuse::after { content: ""; position: absolute; left: 0; right: 0; bottom: 0;
  height: calc(var(--bd-depth, 1) * 100%); background: #22c55e; border-radius: 2px; }
.blockdance-strip .bd-cell.bd-missed { outline: 1px dashed #f59e0b; outline-offset: -1px; }
.blockdance-strip[data-source="preview"] .bd-cell { opacity: 0.6; }
.blockdance-strip .bd-headline { white-space: normal; overflow-wrap: normal; font-weight: 600; max-height: 36px;
  overflow: hidden; flex: none; }
.blockdance-strip .bd-headline .bd-part { white-space: nowrap; }
.blockdance-strip .bd-headline.bd-error { color: #f87171; }
.blockdance-strip .bd-note { font-size: 12px; line-height: 15px; opacity: 0.75; overflow: hidden; max-height: 30px;
  display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical; }
.blockdance-report { box-sizing: border-box; width: 100%; height: 100%; overflow: auto; padding: 4px 6px;
  font: 12px/15px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: pre-wrap;
  color: var(--input-text, #ddd); background: var(--comfy-input-bg, #222); border-radius: 4px; user-select: text; }
.blockdance-report[data-empty="true"] { opacity: 0.6; font-style: italic; }
`;

function mb(bytes) {
  return (bytes / 2 ** 20).toFixed(1);
}

function depthRange(cells) {
  const depths = [...new Set(cells.filter((c) => c.kind === "reuse").map((c) => c.depth))].sort();
  return depths.length ? [depths[0], depths[depths.length - 1]] : null;
}

/** A cell's hover text. Block numbers only where the block count is known (a run, or a saved
 * schedule); before a run the preview knows the depth, not the model's blocks. */
export function cellTitle(c) {
  const where = c.position == null ? "" : ` at ${(100 * c.position).toFixed(0)}% of the timeline`;
  let text = `step ${c.step + 1}${where}: ${LABELS[c.kind] || c.kind}`;
  if (c.kind === "reuse" && c.blocks) text += `, blocks ${c.blocks[0]}-${c.blocks[1] - 1} skipped (depth ${c.depth.toFixed(2)}, ${c.mode})`;
  else if (c.kind === "reuse" && c.depth != null) text += `, the first ${Math.round(100 * c.depth)}% of the blocks skipped (${c.mode})`;
  if (c.kind === "cache" && c.blocks) text += ` after block ${c.blocks[1] - 1} (${c.mode})`;
  else if (c.kind === "cache" && c.depth != null && c.depth > 0) text += ` at ${Math.round(100 * c.depth)}% of the blocks (${c.mode})`;
  if (c.planned && c.planned !== c.kind) text += ` - planned ${c.planned}`;
  return text;
}

function depthNote(depths, numBlocks) {
  if (!depths) return "";
  const [lo, hi] = depths;
  const blocks = numBlocks ? ` of ${numBlocks} blocks` : "";
  return lo === hi ? `depth ${lo.toFixed(2)}${blocks}` : `depth ${lo.toFixed(2)}-${hi.toFixed(2)}${blocks} (cell height)`;
}

/** The strip's state from a run record (RunRecord.to_dict(), as the engine sent it). */
export function fromRecord(record, line) {
  const cells = record.steps.map((s) => ({
    step: s.step, position: s.position, kind: s.done, planned: s.planned, depth: s.depth, blocks: s.blocks, mode: s.mode,
  }));
  const depths = depthRange(cells);
  const headline = `reused ${record.reused}/${record.num_steps} · ideal ${record.ideal_speedup.toFixed(2)}x · ` +
    `cache ${mb(record.cache_peak_bytes)} MB`;
  const note = record.notes?.length ? record.notes.join(" ") : ["last run", depthNote(depths, record.num_blocks)]
    .filter(Boolean).join(" · ");
  return { source: "run", headline, note, cells, depths, numBlocks: record.num_blocks, line, error: null };
}

/** The strip's state from a plan preview (the server's answer for the connected sampler). */
export function fromPreview(plan, sampler) {
  const known = plan.num_blocks != null;   // else the server planned on a nominal block count
  const cells = plan.steps.map((s) => ({
    step: s.step, position: s.position, kind: s.planned, planned: s.planned, depth: s.depth,
    blocks: known ? s.blocks : null, mode: s.mode,
  }));
  const depths = depthRange(cells);
  const headline = `plan: reuse ${plan.reused}/${plan.num_steps} · ideal ${plan.ideal_speedup.toFixed(2)}x`;
  const note = `preview for ${sampler}; assumes ${plan.assumes.split(";")[0]}`;
  return { source: "preview", headline, note, cells, depths, numBlocks: plan.num_blocks,
    line: [depthNote(depths, plan.num_blocks), plan.assumes].filter(Boolean).join("; "), error: null };
}

/** A state that says why there is nothing to draw (no sampler connected, a value out of range, ...).
 * An error's first clause ("depth=0.0 is outside (0, 1]") is the headline, its explanation the note. */
export function fromMessage(text, isError = false) {
  const cut = isError ? text.indexOf(": ") : -1;
  const [headline, note] = cut > 0 ? [text.slice(0, cut), text.slice(cut + 2)] : [text, ""];
  return { source: isError ? "error" : "none", headline, note, cells: [], depths: null, numBlocks: null,
    line: "", error: isError ? text : null };
}

export function createStripElement() {
  const el = document.createElement("div");
  el.className = "blockdance-strip";
  el.dataset.source = "none";
  el.innerHTML = '<div class="bd-cells"></div><div class="bd-headline"></div><div class="bd-note"></div>';
  return el;
}

/** Draw `state` into an element made by createStripElement. */
export function renderStrip(el, state) {
  el.dataset.source = state.source;
  const cellsEl = el.querySelector(".bd-cells");
  const headEl = el.querySelector(".bd-headline");
  cellsEl.replaceChildren(...state.cells.map((c) => {
    const cell = document.createElement("span");
    const kind = KINDS.includes(c.kind) ? c.kind : "full";
    cell.className = `bd-cell bd-${kind}` + (c.planned && c.planned !== c.kind ? " bd-missed" : "");
    cell.dataset.kind = kind;
    if (kind === "reuse") cell.style.setProperty("--bd-depth", String(c.depth));
    cell.title = cellTitle(c);
    return cell;
  }));
  cellsEl.style.display = state.cells.length ? "" : "none";
  // " · "-separated parts wrap as wholes (never mid-word); a message wraps at its spaces.
  const parts = state.headline.split(" · ");
  headEl.replaceChildren(...parts.flatMap((part, i) => {
    const span = document.createElement("span");
    if (parts.length > 1) span.className = "bd-part";
    span.textContent = part;
    return i ? [document.createTextNode(" · "), span] : [span];
  }));
  headEl.classList.toggle("bd-error", state.source === "error");
  const noteEl = el.querySelector(".bd-note");
  noteEl.textContent = state.note;
  el.title = [state.headline, state.note, state.line].filter(Boolean).join("\n");
}

/** The report box BlockDance Calibrate and Ada Train show on the node. */
export function createReportElement() {
  const el = document.createElement("div");
  el.className = "blockdance-report";
  return el;
}

export function renderReport(el, text) {
  el.dataset.empty = text ? "false" : "true";
  el.textContent = text || "The report shows here after a run.";
}

/** Let the canvas have wheel and drag that start on the strip, so zooming and panning (middle button, or
 * space + drag) work over the node as over any other. Only in the classic canvas, where the strip sits
 * in the frontend's DOM-widget layer (`.dom-widget`) above the canvas and would swallow them; in Nodes
 * 2.0 the strip is inside the node's own element (`.lg-node`), whose handlers already pass them on. */
export function passEventsToCanvas(el, getCanvas) {
  const forward = (event, make) => {
    if (!el.closest(".dom-widget") || el.closest(".lg-node")) return;
    const target = getCanvas()?.canvas;
    if (!target) return;
    event.preventDefault();
    event.stopPropagation();
    try { target.dispatchEvent(make(event)); } catch (err) { /* the canvas keeps working without it */ }
  };
  el.addEventListener("wheel", (e) => forward(e, (ev) => new WheelEvent(ev.type, ev)), { passive: false });
  el.addEventListener("pointerdown", (e) => forward(e, (ev) => new PointerEvent(ev.type, ev)));
}
