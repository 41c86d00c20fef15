// The dashboard's actions: a person sends a message, cancels a task or a workflow, retries a task,
// releases a stuck lock. Each is a JSON POST to /dashboard/actions/<name> with the token in a header
// (headers() of app.js); the reply's one sentence shows in #action-line. Whatever takes work away from
// an agent asks first in the #confirm dialog. /dashboard/access (state.access of app.js) says whether
// this token may act at all, and as whom: if not, no button shows. render() of app.js calls
// renderActions(snap) after each redraw.
"use strict";

const acting = { workflow: null };

function say(text, ok) {
  const line = document.getElementById("action-line");
  line.textContent = text;
  line.className = ok ? "done" : "error";
}

async function act(name, body) {
  say("…", true);
  try {
    const reply = await fetch("/dashboard/actions/" + name, {
      method: "POST",
      headers: { ...headers(), "Content-Type": "application/json" },
      body: JSON.stringify(body),
      cache: "no-store",
    });
    const answer = await reply.json();
    if (reply.ok) say(answer.line, true);
    else say(answer.error.message + ". " + answer.error.hint, false);
    return reply.ok;
  } catch (err) {
    say("cannot reach the server: " + err.message, false);
    return false;
  }
}

// Ask before doing `then(reason)`; `reason` is the editable default (null: the action takes none).
function confirmThen(question, reason, then) {
  const dialog = document.getElementById("confirm");
  const why = document.getElementById("confirm-reason");
  document.getElementById("confirm-text").textContent = question;
  document.getElementById("confirm-why").hidden = reason === null;
  why.value = reason || "";
  dialog.returnValue = "";
  dialog.onclose = () => { if (dialog.returnValue === "yes") then(why.value.trim()); };
  dialog.showModal();
}

function button(label, cls, onClick) {
  const b = el("button", label, cls);
  b.type = "button";
  b.addEventListener("click", (event) => { event.stopPropagation(); onClick(); });
  return b;
}

function because(what) { return what + " by " + state.access.acts_as + " from the dashboard"; }

function cancelTask(t) {
  const held = t.state === "claimed" && t.assignee;
  const question = held
    ? `Cancel task ${t.id} ("${t.title}") held by ${t.assignee}? Its holder loses its lease at once, ` +
      "and the tasks that depend on it are cancelled too."
    : `Cancel task ${t.id} ("${t.title}", ${t.state})? The tasks that depend on it are cancelled too.`;
  confirmThen(question, because("cancelled"), (reason) => act("cancel", { task_id: t.id, reason }));
}

function cancelWorkflow(wf) {
  confirmThen(
    `Cancel workflow ${wf.workflow_id} ("${wf.title}")? Every unfinished task of it is cancelled, and ` +
      "agents holding one lose their lease at once.",
    because("cancelled"),
    (reason) => act("cancel", { workflow_id: wf.workflow_id, reason }));
}

function release(lock) {
  const next = lock.waiters ? `the first of its ${lock.waiters} waiter(s) takes it next`
    : "no one is waiting for it";
  confirmThen(
    `Release the lock on ${lock.resource} held by ${lock.holder}? ${lock.holder} loses it at once and is ` +
      `told on its next call; ${next}.`,
    null,
    () => act("release", { resource: lock.resource }));
}

const FINAL = ["done", "dead", "cancelled"];
const RETRIED = ["dead", "cancelled"];

function taskButtons(t) {
  const buttons = [];
  if (!FINAL.includes(t.state)) buttons.push(button("cancel", "act-cancel", () => cancelTask(t)));
  if (RETRIED.includes(t.state)) {
    buttons.push(button("retry", "act-retry",
      () => act("retry", { task_id: t.id, reason: because("retried") })));
  }
  return buttons;
}

// One more column, headed once, holding each row's buttons.
function decorate(tableId, rows) {
  const head = document.querySelector("#" + tableId + " thead tr");
  if (head && !head.querySelector("th.act")) head.appendChild(el("th", "", "act"));
  for (const [tr, buttons] of rows) {
    const old = tr.querySelector("td.act");  // a row app.js did not redraw keeps its cell: replace it
    if (old) old.remove();
    const td = el("td", null, "act");
    td.append(...buttons);
    tr.appendChild(td);
  }
}

function renderActions(snap) {
  const may = Boolean(state.access && state.access.may_act);
  document.getElementById("act").hidden = !may;
  if (!may) return;

  const tasks = new Map((snap.workflow ? snap.workflow.tasks : []).map((t) => [t.id, t]));
  decorate("tasks", [...document.querySelectorAll("#tasks tbody tr[data-task]")]
    .filter((tr) => tasks.has(tr.dataset.task))
    .map((tr) => [tr, taskButtons(tasks.get(tr.dataset.task))]));

  const dead = new Set(snap.dead.map((t) => t.id));  // the dead-tasks table (charts.js)
  decorate("dead", [...document.querySelectorAll("#dead tbody tr[data-task]")]
    .filter((tr) => dead.has(tr.dataset.task))
    .map((tr) => [tr, [button("retry", "act-retry",
      () => act("retry", { task_id: tr.dataset.task, reason: because("retried") }))]]));

  const locks = new Map(snap.locks.map((l) => [l.resource, l]));
  decorate("locks", [...document.querySelectorAll("#locks tbody tr[data-resource]")]
    .filter((tr) => locks.has(tr.dataset.resource))
    .map((tr) => [tr, [button("release", "act-release", () => release(locks.get(tr.dataset.resource)))]]));

  const title = document.querySelector("#workflow h2");
  let stop = document.getElementById("cancel-workflow");
  if (title && !stop) {
    stop = button("cancel workflow", "act-cancel", () => acting.workflow && cancelWorkflow(acting.workflow));
    stop.id = "cancel-workflow";
    title.append(" ", stop);
  }
  acting.workflow = snap.workflow;
  if (stop) stop.hidden = !snap.workflow || snap.workflow.status !== "running";
}

function startActions() {
  document.getElementById("send").addEventListener("submit", async (event) => {
    event.preventDefault();
    const to = document.getElementById("send-to");
    const body = document.getElementById("send-body");
    if (await act("message", { to: to.value.trim(), body: body.value })) body.value = "";
  });
}

document.addEventListener("DOMContentLoaded", startActions);
