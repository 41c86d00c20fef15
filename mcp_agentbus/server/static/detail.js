// A task's detail: click a DAG node or a task row, and GET /dashboard/task?id=… fills the panel (state,
// holder, capability, every attempt and its holder, lease, result, error, progress, recent events). While
// open it is fetched again when the followed workflow shows that task changed, not on every snapshot.
"use strict";

const DETAIL = { id: null, seen: "", fetching: false, again: false };

// A local time with how far it is from the answer's `nowMs`: "14:02:11 (12 s ago)", "14:03:00 (in 40 s)".
function detailTime(iso, nowMs) {
  if (!iso) return "";
  const rel = Date.parse(iso) > nowMs ? untilText(iso, nowMs) : agoText(iso, nowMs);  // common.js
  return new Date(iso).toLocaleTimeString() + " (" + rel + ")";
}

function detailTable(heads, rows) {
  const table = el("table");
  const head = el("tr");
  heads.forEach((h) => head.appendChild(el("th", h)));
  table.appendChild(el("thead")).appendChild(head);
  const body = table.appendChild(el("tbody"));
  for (const cells of rows) {
    const tr = body.appendChild(el("tr"));
    cells.forEach((c) => tr.appendChild(el("td", c)));
  }
  if (!rows.length) body.appendChild(el("tr")).appendChild(el("td", "none", "gone"));
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
  const dl = el("dl");
  for (const [name, value] of fields) {
    if (value === "" && name !== "state") continue;
    dl.append(el("dt", name), el("dd", value, name === "error" ? "error" : ""));
  }
  const result = t.result === null || t.result === undefined ? [] :
    [el("h3", "result"), el("pre", JSON.stringify(t.result, null, 2))];
  const attempts = detailTable(["#", "holder", "claimed", "ended", "how", "error"], d.attempt_history.map((a) => [
    a.attempt, a.holder, detailTime(a.claimed_at, now), detailTime(a.ended_at, now),
    a.outcome || "holding", a.error || ""]));
  attempts.id = "task-attempts";
  const events = detailTable(["at", "topic", "agent", "data"], d.events.map((e) => [
    new Date(e.at).toLocaleTimeString(), e.topic, e.agent || "", JSON.stringify(e.data)]));
  events.id = "task-events";
  document.getElementById("task-detail-body").replaceChildren(dl, ...result,
    el("h3", "attempts"), attempts,
    el("h3", "events"), events,
    el("p", `newest ${d.events.length} about this task among the last ${d.events_scanned} events`, "gone"));
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
        el("p", body.error ? body.error.message + " " + body.error.hint : "error " + reply.status, "error"));
      return;
    }
    if (body.task.id === DETAIL.id) detailRender(body);
    panel.dataset.task = body.task.id;
  } catch (err) {
    document.getElementById("task-detail-body").replaceChildren(el("p", "cannot reach the server: " + err));
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
