// Which sampler a BlockDance Patch node feeds, and that sampler's step settings, read from the
// graph the frontend holds. Used only to ask the server for a plan preview before a run.

const MAX_HOPS = 12;

function widget(node, name) {
  return node?.widgets?.find((w) => w.name === name);
}

function hasSteps(node) {
  return widget(node, "steps") !== undefined;
}

/** The node linked into `node`'s input `name`, or null. Connectivity through the node's own methods
 * (isInputConnected / getInputNode), never the slot's `link` field (deprecated from frontend 1.5x on). */
export function inputNode(node, name) {
  const slot = node.findInputSlot?.(name);
  if (slot == null || slot < 0) return null;
  if (node.isInputConnected && !node.isInputConnected(slot)) return null;
  return node.getInputNode(slot) ?? null;
}

/** The nodes linked from `node`'s output `slot` (isOutputConnected / getOutputNodes, never the slot's
 * deprecated `links` field). */
export function outputNodes(node, slot) {
  if (node.isOutputConnected && !node.isOutputConnected(slot)) return [];
  return node.getOutputNodes(slot) || [];
}

/** The nearest node downstream of `node`'s MODEL output that sets a step count (KSampler,
 * KSamplerAdvanced, BasicScheduler, ...), following MODEL -> MODEL nodes (LoRA, ModelSampling*)
 * and, for custom samplers, their `sigmas` input back to the scheduler. */
export function findSampler(node) {
  const seen = new Set([node.id]);
  let frontier = [node];
  for (let hop = 0; hop < MAX_HOPS && frontier.length; hop++) {
    const next = [];
    for (const current of frontier) {
      for (let slot = 0; slot < (current.outputs?.length || 0); slot++) {
        for (const target of outputNodes(current, slot)) {
          if (seen.has(target.id)) continue;
          seen.add(target.id);
          if (hasSteps(target)) return target;
          const scheduler = inputNode(target, "sigmas");
          if (scheduler && hasSteps(scheduler)) return scheduler;
          next.push(target);
        }
      }
    }
    frontier = next;
  }
  return null;
}

/** The step settings of a sampler node as query parameters for GET /blockdance/plan. */
export function samplerQuery(sampler) {
  const query = { steps: widget(sampler, "steps").value };
  for (const name of ["denoise", "start_at_step", "end_at_step"]) {
    const w = widget(sampler, name);
    if (w !== undefined) query[name] = w.value;
  }
  return query;
}

/** A short name for the sampler in the strip's preview line. */
export function samplerLabel(sampler, query) {
  const scheduler = widget(sampler, "scheduler")?.value;
  let text = `${query.steps} steps`;
  if (query.start_at_step !== undefined) text += ` ${query.start_at_step}-${Math.min(query.end_at_step, query.steps)}`;
  if (query.denoise !== undefined && query.denoise < 1) text += ` denoise ${query.denoise}`;
  return scheduler ? `${text}, ${scheduler}` : text;
}
