// A task's detail: click a DAG node or a task row, and GET /dashboard/task?id=… fills the panel (state,
// holder, capability, every attempt and its holder, lease, result, error, progress, recent events). While
// open it is fetched again when the followed workflow shows that task changed, not on every snapshot.
"use strict";

const DETAIL = { id: null, seen: "", fetching: false, again: false };

function detailEl(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function detailTime(iso, nowMs) {
  if (!iso) return "";
  const at = new Date(iso), s = Math.round((nowMs - at.getTime()) / 1000);
  const rel = s >= 0 ? (s < 120 ? s + " s ago" : Math.round(s / 60) + " min ago") : "in " + -s + " s";
  return at.toLocaleTimeString() + " (" + rel + ")";
}

function detailTable(heads, rows) {
  const table = detailEl("table");
  const head = detailEl("tr");
  heads.forEach((h) => head.appendChild(detailEl("th", h)));
  table.appendChild(detailEl("thead")).appendChild(head);
  const body = table.appendChild(detailEl("tbody"));
  for (const cells of rows) {
    const tr = body.appendChild(detailEl("tr"));
    cells.forEach((c) => tr.appendChild(detailEl("td", c)));
  }
  if (!rows.length) body.appendChild(detailEl("tr")).appendChild(detailEl("td", "none", "gone"));
  return table;
}

function detailRender(d) {
  const t = d.task, now = d.now_ms;
  document.getElementById("task-detail-name").textContent = t.title + " (" + t.id + (t.key ? ", " + t.key : "") + ")";
  const fields = [
    ["state", t.state],
    ["holder / assignee", t.assignee || ""],
    ["capability", t.capability],
    ["priority", t.priority],
    ["attempts", t.attempts + " of " + t.max_attempts],
    ["lease expires", t.state === "claimed" ? detailTime(t.lease_expires_at, now) : ""],
    ["progress", t.progress ? Math.round(t.progress.percent) + "% " + t.progress.message : ""],
    ["depends on", t.depends_on.join(", ")],
    ["error", t.error || ""],
    ["summary", t.summary || ""],
    ["created", detailTime(t.created_at, now)],
    ["updated", detailTime(t.updated_at, now)],
  ];
  const dl = detailEl("dl");
  for (const [name, value] of fields) {
    if (value === "" && name !== "state") continue;
    dl.append(detailEl("dt", name), detailEl("dd", value, name === "error" ? "error" : ""));
  }
  const result = t.result === null || t.result === undefined ? [] :
    [detailEl("h3", "result"), detailEl("pre", JSON.stringify(t.result, null, 2))];
  const attempts = detailTable(["#", "holder", "claimed", "ended", "how", "error"], d.attempt_history.map((a) => [
    a.attempt, a.holder, detailTime(a.claimed_at, now), detailTime(a.ended_at, now),
    a.outcome || "holding", a.error || ""]));
  attempts.id = "task-attempts";
  const events = detailTable(["at", "topic", "agent", "data"], d.events.map((e) => [
    new Date(e.at).toLocaleTimeString(), e.topic, e.agent || "", JSON.stringify(e.data)]));
  events.id = "task-events";
  document.getElementById("task-detail-body").replaceChildren(dl, ...result,
    detailEl("h3", "attempts"), attempts,
    detailEl("h3", "events"), events,
    detailEl("p", `newest ${d.events.length} about this task among the last ${d.events_scanned} events`, "gone"));
  for (const g of document.querySelectorAll("#dag-svg .dag-node")) {
    g.classList.toggle("selected", g.dataset.task === t.id);
  }
}

async function detailFetch() {
  if (DETAIL.fetching) { DETAIL.again = true; return; }  // one at a time; one more if it changed meanwhile
  DETAIL.fetching = true;
  try {
    do {
      DETAIL.again = false;
      if (DETAIL.id) await detailFetchOnce();
    } while (DETAIL.again);
  } finally {
    DETAIL.fetching = false;
  }
}

async function detailFetchOnce() {
  const panel = document.getElementById("task-detail");
  try {
    const reply = await fetch("/dashboard/task?id=" + encodeURIComponent(DETAIL.id),
      { headers: headers(), cache: "no-store" });  // headers(): app.js, the token if any
    const body = await reply.json();
    if (!reply.ok) {
      document.getElementById("task-detail-body").replaceChildren(
        detailEl("p", body.error ? body.error.message + " " + body.error.hint : "error " + reply.status, "error"));
      return;
    }
    if (body.task.id === DETAIL.id) detailRender(body);
    panel.dataset.task = body.task.id;
  } catch (err) {
    document.getElementById("task-detail-body").replaceChildren(detailEl("p", "cannot reach the server: " + err));
  }
}

function showTaskDetail(taskId) {
  DETAIL.id = taskId;
  DETAIL.seen = "";
  const panel = document.getElementById("task-detail");
  panel.hidden = false;
  delete panel.dataset.task;
  detailFetch();
}

// Called by app.js render() with the followed workflow: the open task is fetched again when what the
// snapshot shows of it changed.
function followTaskDetail(wf) {
  if (!DETAIL.id || !wf) return;
  const t = wf.tasks.find((task) => task.id === DETAIL.id);
  if (!t) return;
  const seen = JSON.stringify([t.state, t.assignee, t.attempts, t.progress, t.updated_at, t.lease_expires_at]);
  if (seen !== DETAIL.seen) {
    DETAIL.seen = seen;
    detailFetch();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("task-detail-close").addEventListener("click", () => {
    DETAIL.id = null;
    document.getElementById("task-detail").hidden = true;
  });
  document.querySelector("#tasks tbody").addEventListener("click", (event) => {
    const tr = event.target.closest("tr[data-task]");
    if (tr) showTaskDetail(tr.dataset.task);
  });
});
