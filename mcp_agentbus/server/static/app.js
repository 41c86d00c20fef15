// The agentbus dashboard's core: fetches /dashboard/snapshot, and again on each "changed" event of
// /dashboard/stream (read with fetch, not EventSource, so the token goes in a header). Who may see which
// namespace (tokens, the login form, the picker) is access.js's; the page's shared helpers are common.js's.
// The page's other files use its helpers: row/fill/fillIf (tables), ago/until (relative times that tick
// without a fetch), status(), refresh(); and each adds one call to render().
"use strict";

const state = {
  workflow: null, snap: null, fetching: false, again: false,
  namespace: null,  // the namespace shown (null: the server's first)
  access: null,     // /dashboard/access: namespaces served, whether tokens are needed, may_act
  skew: 0,          // the server's now_ms minus Date.now(): relative times tick on the server's clock
  updated: null,    // Date.now() when the snapshot shown arrived
  down: null,       // Date.now() since the stream is down (null while live)
  why: "",          // and why
  stream: null,     // the AbortController of the open stream
  shown: {},        // per table, what it shows: a table whose data did not change is not redrawn
};
// Not every change writes an event (a heartbeat that only renews an agent's time does not): a page that
// heard nothing this long fetches anyway, so the times it shows are never older than that.
const QUIET_REFRESH_MS = 15000;

function row(cells, cls) {
  const tr = el("tr", null, cls);
  for (const cell of cells) {
    tr.appendChild(cell instanceof Node ? wrap(cell) : el("td", cell));
  }
  return tr;
}

function wrap(node) { const td = el("td"); td.appendChild(node); return td; }

function fill(id, rows, empty) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows);
  if (!rows.length) body.appendChild(row([empty || "none"], "gone"));
}

// fill(id, build()) only when `data` differs from what the table shows: under a busy bus most tables
// stay as they are, and redrawing them would cost the page its responsiveness (and a click its row).
function fillIf(id, data, build, empty) {
  const key = JSON.stringify(data);
  if (state.shown[id] === key) return;
  state.shown[id] = key;
  fill(id, build(), empty);
}

function now() { return Date.now() + state.skew; }

function ago(iso) {  // "12 s ago", ticking; the local time on hover
  const node = el("span", iso ? agoText(iso, now()) : "");
  if (iso) { node.dataset.ago = iso; node.title = new Date(iso).toLocaleString(); }
  return node;
}

function until(iso) {
  const node = el("span", iso ? untilText(iso, now()) : "");
  if (iso) { node.dataset.until = iso; node.title = new Date(iso).toLocaleString(); }
  return node;
}

function tick() {
  for (const node of document.querySelectorAll("[data-ago]")) node.textContent = agoText(node.dataset.ago, now());
  for (const node of document.querySelectorAll("[data-until]")) node.textContent = untilText(node.dataset.until, now());
  const updated = document.getElementById("updated");
  const secs = (since) => Math.round((Date.now() - since) / 1000);
  updated.textContent = state.updated === null ? "" : "updated " + secs(state.updated) + " s ago";
  if (state.updated !== null) updated.title = new Date(state.updated).toLocaleString();
  if (state.down !== null) status("stream down for " + secs(state.down) + " s, reconnecting… (" + state.why + ")");
  else if (state.updated !== null && Date.now() - state.updated > QUIET_REFRESH_MS) refresh();
}

function bar(done, total) {
  const box = el("span");
  const outer = el("span", null, "bar");
  const inner = el("span");
  inner.style.width = (total ? Math.round((100 * done) / total) : 0) + "%";
  outer.appendChild(inner);
  box.append(outer, done + "/" + total);
  return box;
}

function render(snap) {
  document.getElementById("namespace").textContent = snap.namespace;
  fillIf("agents", snap.agents, () => snap.agents.map((a) => row(
    [a.agent, a.alive ? a.status : "gone", a.note, ago(a.last_seen), a.tasks.join(", "), a.locks.join(", ")],
    a.alive ? "" : "gone")));
  fillIf("workflows", [snap.workflows, state.workflow], () => snap.workflows.map((w) => {
    const p = w.progress;
    const tr = row([w.workflow_id, w.title, w.status, bar(p.done, p.total)],
      "clickable " + w.status + (w.workflow_id === state.workflow ? " selected" : ""));
    tr.dataset.workflow = w.workflow_id;
    tr.addEventListener("click", () => select(w.workflow_id));
    return tr;
  }));
  const wf = snap.workflow;
  document.getElementById("workflow").hidden = !wf;
  if (wf) {
    document.getElementById("workflow-name").textContent = wf.title + " (" + wf.workflow_id + ")";
    fillIf("tasks", wf.tasks, () => wf.tasks.map((t) => {
      const tr = row([t.id, t.title, t.state, t.assignee || "", t.attempts + "/" + t.max_attempts,
        t.progress ? Math.round(t.progress.percent) + "% " + t.progress.message : "", t.error || ""], t.state);
      tr.dataset.task = t.id;
      return tr;
    }));
  }
  drawDag(wf); followTaskDetail(wf);  // dag.js, detail.js
  fillIf("queues", snap.ready, () => Object.entries(snap.ready).map(([cap, n]) => row([cap, n])), "no ready tasks");
  document.getElementById("queue-totals").textContent =
    `claimed ${snap.claimed} · delayed ${snap.delayed} · dead ${snap.dead_total}`;
  fillIf("locks", snap.locks, () => snap.locks.map((l) => {
    const tr = row([l.resource, l.holder, until(l.expires_at), l.waiters]);
    tr.dataset.resource = l.resource;  // actions.js: its release button
    return tr;
  }));
  const filter = document.getElementById("topic-filter").value.trim();
  const events = snap.events.slice().reverse().filter((e) => !filter || e.topic.includes(filter));
  fillIf("events", events, () => events.map((e) => row(
    [el("span", new Date(e.at).toLocaleTimeString()), e.topic, e.agent || "", e.data === null ? "" : JSON.stringify(e.data)])));
  statsChanged(snap); inboxChanged();  // charts.js, inbox.js
  renderActions(snap);  // actions.js
}

function status(text) { document.getElementById("status").textContent = text; }

async function refresh() {
  if (state.fetching) { state.again = true; return; }  // one fetch at a time; one more if changed meanwhile
  state.fetching = true;
  try {
    do {
      state.again = false;
      const asked = state.namespace;
      const query = state.workflow ? "?workflow=" + encodeURIComponent(state.workflow) : "";
      const reply = await fetch("/dashboard/snapshot" + query, { headers: headers(), cache: "no-store" });
      if (asked !== state.namespace) { state.again = true; continue; }  // switched meanwhile
      if (reply.status === 401) { refused(); return; }
      const body = await reply.json();
      if (reply.status === 404 && state.workflow) { state.workflow = null; state.again = true; continue; }
      if (!reply.ok) { status(body.error ? body.error.message : "error " + reply.status); return; }
      state.snap = body;
      state.skew = body.now_ms - Date.now();
      state.updated = Date.now();
      render(body);
      tick();
      document.body.dataset.updated = String(body.now_ms);
    } while (state.again);
  } catch (err) {
    status("cannot reach the server: " + err);
  } finally {
    state.fetching = false;
  }
}

function select(workflowId) {
  state.workflow = state.workflow === workflowId ? null : workflowId;
  refresh();
}

async function listen(controller) {
  while (!controller.signal.aborted) {
    try {
      const reply = await fetch("/dashboard/stream", { headers: headers(), cache: "no-store", signal: controller.signal });
      if (reply.status === 401) { refused(); return; }
      if (!reply.ok || !reply.body) {  // e.g. 429: this token's tabs hold all its streams
        const body = await reply.json().catch(() => ({}));
        throw new Error(body.error ? body.error.message + ". " + body.error.hint : "stream answered " + reply.status);
      }
      state.down = null;
      status("live");
      refresh();  // now that every change is heard: what the namespace is (and what changed while down)
      const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const message = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (message.split("\n").includes("event: changed")) refresh();
        }
      }
      throw new Error("the stream ended");
    } catch (err) {
      if (controller.signal.aborted) return;
      if (state.down === null) state.down = Date.now();
      state.why = err.message;
      tick();
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function start() {
  document.getElementById("topic-filter").addEventListener("input", () => state.snap && render(state.snap));
  setInterval(tick, 1000);
  startAccess();  // access.js: the namespace shown, then its stream
}

document.addEventListener("DOMContentLoaded", start);
