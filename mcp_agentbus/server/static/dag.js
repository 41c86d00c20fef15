// The followed workflow's DAG as SVG: a node per task, coloured by state, an edge per dependency.
// Layout: column = longest path from the roots; an edge spanning columns passes through a placeholder
// in each column between its ends, so it runs beside the nodes there, not behind them; order within a
// column by barycenter sweeps, which cut crossings. Nodes and placeholders stack in their column with a
// gap, so no two ever overlap. The layout is redone only
// when tasks or dependencies change, and only the state classes when states change: a busy bus makes the
// page fetch snapshots ~3 times a second, and most of them change nothing drawn here.
"use strict";

const DAG = {
  NODE_W: 170, NODE_H: 30, VIA_H: 4, GAP_X: 60, GAP_Y: 12, PAD: 16, LABEL: 24, SWEEPS: 4, VIAS: 4000,
  STATES: ["blocked", "ready", "delayed", "claimed", "done", "dead", "cancelled"],
  zoom: 1, shape: "", states: "", layouts: 0, paints: 0, width: 0, height: 0,
};

// The in-workflow tasks each task depends on (depends_on names a task by key where it has one, by id
// otherwise; a dependency outside the workflow draws no edge).
function dagParents(tasks) {
  const index = new Map();
  tasks.forEach((t, i) => { index.set(t.id, i); if (t.key && !index.has(t.key)) index.set(t.key, i); });
  return tasks.map((t) => [...new Set(t.depends_on.map((d) => index.get(d)).filter((i) => i !== undefined))]);
}

// Column of each task: the longest path from a root (Kahn's order; a cycle cannot be created, but a
// task left in one would sit in column 0 rather than hang the page).
function dagDepths(parents) {
  const n = parents.length, depth = new Array(n).fill(0), waiting = parents.map((p) => p.length);
  const children = parents.map(() => []);
  parents.forEach((ps, i) => ps.forEach((p) => children[p].push(i)));
  const queue = [];
  waiting.forEach((w, i) => { if (!w) queue.push(i); });
  for (let q = 0; q < queue.length; q++) {
    const i = queue[q];
    for (const c of children[i]) {
      depth[c] = Math.max(depth[c], depth[i] + 1);
      if (--waiting[c] === 0) queue.push(c);
    }
  }
  return depth;
}

// The edges, each with the placeholders it passes through, and the graph with the placeholders in it
// (numbered after the tasks). At most DAG.VIAS placeholders in all (200 tasks of 50 dependencies each
// could ask for a million), given to the shortest spans first; a longer edge is drawn straight across.
function dagRoutes(parents, depth) {
  const edges = [];
  parents.forEach((ps, i) => ps.forEach((p) => edges.push([p, i])));
  const span = ([p, i]) => depth[i] - depth[p];
  edges.sort((a, b) => span(a) - span(b));
  const at = depth.slice(), up = parents.map(() => []), down = parents.map(() => []);
  let budget = DAG.VIAS;
  const routes = edges.map(([p, i]) => {
    const via = [];
    if (span([p, i]) - 1 <= budget) {
      for (let d = depth[p] + 1; d < depth[i]; d++) { via.push(at.length); at.push(d); up.push([]); down.push([]); }
      budget -= via.length;
    }
    const chain = [p, ...via, i];
    for (let k = 1; k < chain.length; k++) { up[chain[k]].push(chain[k - 1]); down[chain[k - 1]].push(chain[k]); }
    return { from: p, to: i, via };
  });
  return { routes, at, up, down };
}

// Rows within each column: creation order, then barycenter sweeps (by parents rightwards, by children
// leftwards), each node moving to the mean row of its neighbours; ties keep the previous order.
function dagRows(parents, children, depth) {
  const columns = [];
  depth.forEach((d, i) => (columns[d] = columns[d] || []).push(i));
  const row = new Array(depth.length).fill(0);
  const place = () => columns.forEach((col) => col.forEach((i, r) => { row[i] = r; }));
  place();
  for (let s = 0; s < DAG.SWEEPS; s++) {
    const by = s % 2 === 0 ? parents : children;
    const order = s % 2 === 0 ? columns : columns.slice().reverse();
    for (const col of order) {
      const key = new Map(col.map((i) => {
        const near = by[i];
        return [i, near.length ? near.reduce((sum, j) => sum + row[j], 0) / near.length : row[i]];
      }));
      col.sort((a, b) => key.get(a) - key.get(b) || row[a] - row[b]);
      col.forEach((i, r) => { row[i] = r; });
    }
  }
  return { row, columns };
}

function dagLabel(title) {
  return title.length > DAG.LABEL ? title.slice(0, DAG.LABEL - 1) + "…" : title;
}

function dagCurve(x1, y1, x2, y2) {
  const bend = Math.max(20, (x2 - x1) / 2);
  return ` C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`;
}

function dagLayout(wf) {
  const tasks = wf.tasks, n = tasks.length, parents = dagParents(tasks);
  const depth = dagDepths(parents);
  const { routes, at, up, down } = dagRoutes(parents, depth);
  const { columns } = dagRows(up, down, at);
  const x = (i) => DAG.PAD + at[i] * (DAG.NODE_W + DAG.GAP_X);
  const top = new Array(at.length);  // stacked down each column: a task NODE_H high, a placeholder VIA_H
  DAG.height = 0;
  for (const col of columns) {
    let y = DAG.PAD;
    for (const i of col) { top[i] = y; y += (i < n ? DAG.NODE_H : DAG.VIA_H) + DAG.GAP_Y; }
    DAG.height = Math.max(DAG.height, y + DAG.PAD);
  }
  const y = (i) => top[i];
  const mid = (i) => top[i] + (i < n ? DAG.NODE_H : DAG.VIA_H) / 2;
  DAG.width = 2 * DAG.PAD + columns.length * DAG.NODE_W + Math.max(0, columns.length - 1) * DAG.GAP_X;
  const drawing = svg("svg", { viewBox: `0 0 ${DAG.width} ${DAG.height}`, id: "dag-svg" });
  const defs = svg("defs");
  const arrow = svg("marker", { id: "dag-arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
    markerWidth: 6, markerHeight: 6, orient: "auto" });
  arrow.appendChild(svg("path", { d: "M0,0 L10,5 L0,10 z", class: "dag-arrowhead" }));
  defs.appendChild(arrow);
  drawing.appendChild(defs);
  const edges = svg("g", { class: "dag-edges" });
  for (const { from, to, via } of routes) {
    let cx = x(from) + DAG.NODE_W, cy = mid(from), d = `M${cx},${cy}`;
    for (const v of via) {
      d += dagCurve(cx, cy, x(v), mid(v)) + ` L${x(v) + DAG.NODE_W},${mid(v)}`;
      cx = x(v) + DAG.NODE_W;
      cy = mid(v);
    }
    d += dagCurve(cx, cy, x(to), mid(to));
    edges.appendChild(svg("path", { class: "dag-edge", "data-from": tasks[from].id, "data-to": tasks[to].id,
      d, "marker-end": "url(#dag-arrow)" }));
  }
  drawing.appendChild(edges);
  const nodes = svg("g", { class: "dag-nodes" });
  tasks.forEach((t, i) => {
    const g = svg("g", { class: "dag-node", "data-task": t.id, transform: `translate(${x(i)},${y(i)})` });
    g.appendChild(svg("title", {}, `${t.title}\n${t.id}${t.key ? " (" + t.key + ")" : ""}`));
    g.appendChild(svg("rect", { width: DAG.NODE_W, height: DAG.NODE_H, rx: 5 }));
    g.appendChild(svg("text", { x: 8, y: DAG.NODE_H / 2 + 4 }, dagLabel(t.title || t.id)));
    g.addEventListener("click", () => window.showTaskDetail && window.showTaskDetail(t.id));
    nodes.appendChild(g);
  });
  drawing.appendChild(nodes);
  DAG.layouts++;
  return drawing;
}

function dagPaintStates(wf) {
  const byId = new Map(wf.tasks.map((t) => [t.id, t.state]));
  for (const g of document.querySelectorAll("#dag-svg .dag-node")) {
    const selected = g.classList.contains("selected") ? " selected" : "";  // detail.js's open task
    g.setAttribute("class", "dag-node state-" + byId.get(g.dataset.task) + selected);
  }
}

function dagApplyZoom() {
  const drawing = document.getElementById("dag-svg");
  if (!drawing) return;
  drawing.setAttribute("width", String(Math.round(DAG.width * DAG.zoom)));
  drawing.setAttribute("height", String(Math.round(DAG.height * DAG.zoom)));
  document.getElementById("dag-zoom").textContent = Math.round(DAG.zoom * 100) + "%";
}

function dagSetZoom(zoom) {
  DAG.zoom = Math.min(3, Math.max(0.2, zoom));
  dagApplyZoom();
}

function dagLegend() {
  const legend = document.getElementById("dag-legend");
  if (legend.childElementCount) return;
  for (const s of DAG.STATES) {
    const item = document.createElement("span");
    item.className = "dag-key state-" + s;
    item.textContent = s;
    legend.appendChild(item);
  }
}

// Called by app.js render() with the followed workflow (or null): draws only what changed.
function drawDag(wf) {
  const section = document.getElementById("dag-view");
  section.hidden = !wf || !wf.tasks.length;
  if (section.hidden) { DAG.shape = ""; return; }
  dagLegend();
  const shape = JSON.stringify([wf.workflow_id, wf.tasks.map((t) => [t.id, t.key, t.title, t.depends_on])]);
  const states = wf.tasks.map((t) => t.state).join();
  if (shape !== DAG.shape) {
    document.getElementById("dag-canvas").replaceChildren(dagLayout(wf));
    DAG.shape = shape;
    DAG.states = "";
    dagApplyZoom();
    section.dataset.layouts = String(DAG.layouts);
  }
  if (states !== DAG.states) {
    dagPaintStates(wf);
    DAG.states = states;
    section.dataset.paints = String(++DAG.paints);
  }
  const left = wf.tasks_left_out || [];
  document.getElementById("dag-note").textContent = left.length ? `${left.length} task(s) not drawn: too many ` +
    "for one snapshot" : "";
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("dag-in").addEventListener("click", () => dagSetZoom(DAG.zoom * 1.25));
  document.getElementById("dag-out").addEventListener("click", () => dagSetZoom(DAG.zoom / 1.25));
  document.getElementById("dag-fit").addEventListener("click", () => {
    const box = document.getElementById("dag-canvas");
    dagSetZoom(Math.min(1, box.clientWidth / DAG.width, box.clientHeight / DAG.height));
  });
  document.getElementById("dag-canvas").addEventListener("wheel", (event) => {
    if (!event.ctrlKey) return;  // a plain wheel scrolls; ctrl+wheel (and a pinch) zooms
    event.preventDefault();
    dagSetZoom(DAG.zoom * (event.deltaY < 0 ? 1.1 : 1 / 1.1));
  }, { passive: false });
});
