// The agentbus dashboard: fetches /dashboard/snapshot, and again on each "changed" event of
// /dashboard/stream. The stream is read with fetch, not EventSource, so the token goes in a header.
"use strict";

const state = { workflow: null, snap: null, fetching: false, again: false };

function token() { return sessionStorage.getItem("agentbus-token") || ""; }

function headers() {
  return token() ? { Authorization: "Bearer " + token() } : {};
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

function ago(nowMs, iso) {
  if (!iso) return "";
  const s = Math.max(0, Math.round((nowMs - Date.parse(iso)) / 1000));
  return s < 120 ? s + " s ago" : Math.round(s / 60) + " min ago";
}

function until(nowMs, iso) {
  if (!iso) return "";
  return "in " + Math.max(0, Math.round((Date.parse(iso) - nowMs) / 1000)) + " s";
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
  const now = snap.now_ms;
  document.getElementById("namespace").textContent = snap.namespace;
  fill("agents", snap.agents.map((a) => row(
    [a.agent, a.alive ? a.status : "gone", a.note, ago(now, a.last_seen), a.tasks.join(", "), a.locks.join(", ")],
    a.alive ? "" : "gone")));
  fill("workflows", snap.workflows.map((w) => {
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
    fill("tasks", wf.tasks.map((t) => {
      const tr = row([t.id, t.title, t.state, t.assignee || "", t.attempts + "/" + t.max_attempts,
        t.progress ? Math.round(t.progress.percent) + "% " + t.progress.message : "", t.error || ""], t.state);
      tr.dataset.task = t.id;
      return tr;
    }));
  }
  drawDag(wf); followTaskDetail(wf);  // dag.js, detail.js
  fill("queues", Object.entries(snap.ready).map(([cap, n]) => row([cap, n])), "no ready tasks");
  document.getElementById("queue-totals").textContent =
    `claimed ${snap.claimed} · delayed ${snap.delayed} · dead ${snap.dead_total}`;
  fill("locks", snap.locks.map((l) => {
    const tr = row([l.resource, l.holder, until(now, l.expires_at), l.waiters]);
    tr.dataset.resource = l.resource;
    return tr;
  }));
  const filter = document.getElementById("topic-filter").value.trim();
  const events = snap.events.slice().reverse().filter((e) => !filter || e.topic.includes(filter));
  fill("events", events.map((e) => row(
    [e.at.slice(11, 19), e.topic, e.agent || "", e.data === null ? "" : JSON.stringify(e.data)])));
  statsChanged(snap); inboxChanged();  // charts.js, inbox.js
  renderActions(snap);
}

function status(text) { document.getElementById("status").textContent = text; }

function askToken() {
  document.getElementById("login").hidden = false;
  status("needs a token");
}

async function refresh() {
  if (state.fetching) { state.again = true; return; }  // one fetch at a time; one more if changed meanwhile
  state.fetching = true;
  try {
    do {
      state.again = false;
      const query = state.workflow ? "?workflow=" + encodeURIComponent(state.workflow) : "";
      const reply = await fetch("/dashboard/snapshot" + query, { headers: headers(), cache: "no-store" });
      if (reply.status === 401) { askToken(); return; }
      const body = await reply.json();
      if (reply.status === 404 && state.workflow) { state.workflow = null; state.again = true; continue; }
      if (!reply.ok) { status(body.error ? body.error.message : "error " + reply.status); return; }
      state.snap = body;
      render(body);
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

async function listen() {
  for (;;) {
    try {
      const reply = await fetch("/dashboard/stream", { headers: headers(), cache: "no-store" });
      if (reply.status === 401) { askToken(); return; }
      if (!reply.ok || !reply.body) throw new Error("stream answered " + reply.status);
      status("live");
      refresh();  // whatever changed while the stream was down
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
    } catch (err) {
      status("reconnecting… (" + err.message + ")");
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function start() {
  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("agentbus-token", document.getElementById("token").value.trim());
    document.getElementById("login").hidden = true;
    listen();
  });
  document.getElementById("topic-filter").addEventListener("input", () => state.snap && render(state.snap));
  listen();
}

document.addEventListener("DOMContentLoaded", start);
