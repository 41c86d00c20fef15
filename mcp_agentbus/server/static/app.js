// The agentbus dashboard's core: fetches /dashboard/snapshot, and again on each "changed" event of
// /dashboard/stream (read with fetch, not EventSource, so the token goes in a header).
// The page's other files use its helpers: headers() (the token and namespace every request carries),
// el/row/fill/fillIf (tables), ago/until (relative times that tick without a fetch), refresh(); and
// each adds one call to render().
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
// Not every change writes an event (a heartbeat that changes only a note or its time does not): a page
// that heard nothing this long fetches anyway, so what it shows is never older than that.
const QUIET_REFRESH_MS = 15000;
const TOKENS = "agentbus-tokens";  // sessionStorage: {namespace: token}, one per namespace
const SHOWN = "agentbus-namespace";

function tokens() {
  try { return JSON.parse(sessionStorage.getItem(TOKENS) || "{}"); } catch { return {}; }
}

function token() {
  const all = tokens();
  return (state.namespace && all[state.namespace]) || (state.namespace ? "" : Object.values(all)[0] || "");
}

function headers() {
  const sent = {};
  if (token()) sent.Authorization = "Bearer " + token();
  if (state.namespace) sent["X-Agentbus-Namespace"] = state.namespace;
  return sent;
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

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

function agoText(iso) {
  const s = Math.max(0, Math.round((now() - Date.parse(iso)) / 1000));
  return s < 120 ? s + " s ago" : s < 7200 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago";
}

function untilText(iso) { return "in " + Math.max(0, Math.round((Date.parse(iso) - now()) / 1000)) + " s"; }

function ago(iso) {  // "12 s ago", ticking; the local time on hover
  const node = el("span", iso ? agoText(iso) : "");
  if (iso) { node.dataset.ago = iso; node.title = new Date(iso).toLocaleString(); }
  return node;
}

function until(iso) {
  const node = el("span", iso ? untilText(iso) : "");
  if (iso) { node.dataset.until = iso; node.title = new Date(iso).toLocaleString(); }
  return node;
}

function tick() {
  for (const node of document.querySelectorAll("[data-ago]")) node.textContent = agoText(node.dataset.ago);
  for (const node of document.querySelectorAll("[data-until]")) node.textContent = untilText(node.dataset.until);
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

function askToken(message) {
  state.down = null;
  document.getElementById("login").hidden = false;
  document.getElementById("login-note").textContent = message || "";
  status("needs a token");
}

// A 401 for the namespace shown: its token was revoked (or never valid). Forget it, and show another
// namespace the tab holds a token for, or ask for one.
function refused() {
  const all = tokens();
  if (state.namespace && all[state.namespace]) {
    delete all[state.namespace];
    sessionStorage.setItem(TOKENS, JSON.stringify(all));
  }
  const other = Object.keys(all)[0];
  if (other) { show(other); return; }
  askToken(state.access && state.access.tokens ? "The token was refused (revoked?): add a valid one." : "");
}

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

// What the caller may see (GET /dashboard/access), then the namespace's stream.
async function connect() {
  if (state.stream) state.stream.abort();
  const controller = state.stream = new AbortController();
  try {
    const reply = await fetch("/dashboard/access", { headers: headers(), cache: "no-store" });
    if (reply.status === 401) { refused(); return; }
    const body = await reply.json();
    if (!reply.ok) {
      if (state.namespace && reply.status !== 503) { state.namespace = null; connect(); return; }  // no longer served
      throw new Error(body.error ? body.error.message : "error " + reply.status);
    }
    state.access = body;
    state.namespace = body.namespace;
    sessionStorage.setItem(SHOWN, body.namespace);
    document.getElementById("add-token").hidden = !body.tokens;
    picker(body.tokens ? Object.keys(tokens()) : body.namespaces);
  } catch (err) {
    if (state.down === null) state.down = Date.now();
    state.why = err.message;
    tick();
    setTimeout(() => { if (!controller.signal.aborted) connect(); }, 1000);
    return;
  }
  listen(controller);
}

function picker(namespaces) {
  const select = document.getElementById("namespace-picker");
  select.hidden = namespaces.length < 2;
  select.replaceChildren(...namespaces.map((name) => {
    const option = el("option", name);
    option.value = name;
    option.selected = name === state.namespace;
    return option;
  }));
}

function show(namespace) {  // switch the page to another namespace
  state.namespace = namespace;
  state.workflow = null;
  state.snap = null;
  state.shown = {};
  state.updated = null;
  connect();
}

async function addToken(value) {
  const reply = await fetch("/dashboard/access", { headers: { Authorization: "Bearer " + value }, cache: "no-store" });
  if (!reply.ok) { askToken("That token is not valid here (a typo, or revoked?)."); return; }
  const body = await reply.json();
  const all = tokens();
  all[body.namespace] = value;
  sessionStorage.setItem(TOKENS, JSON.stringify(all));
  document.getElementById("login").hidden = true;
  show(body.namespace);
}

function start() {
  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    addToken(document.getElementById("token").value.trim());
    document.getElementById("token").value = "";
  });
  document.getElementById("add-token").addEventListener("click", () => askToken(""));
  document.getElementById("namespace-picker").addEventListener("change", (event) => show(event.target.value));
  document.getElementById("topic-filter").addEventListener("input", () => state.snap && render(state.snap));
  state.namespace = sessionStorage.getItem(SHOWN);
  setInterval(tick, 1000);
  connect();
}

document.addEventListener("DOMContentLoaded", start);
