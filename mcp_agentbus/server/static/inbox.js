// An agent's inbox, by thread: click an agent in the agents table (or type its id) to see its newest
// messages, read and unread, from GET /dashboard/inbox?agent=<id>. Looking marks nothing read. Fetched
// again when the page's snapshot changes (inboxChanged, called by app.js's render) and redrawn only
// when the messages changed. Uses follower() of charts.js and el/row/fill of app.js.
"use strict";

const inbox = { agent: "", drawn: "" };

function timeOf(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function drawThreads(body, ok, target) {
  if (target !== inboxUrl()) return; // an answer for an agent no longer shown
  const key = JSON.stringify(body);
  if (key === inbox.drawn) return;
  inbox.drawn = key;
  const box = document.getElementById("threads");
  const note = document.getElementById("inbox-note");
  if (!ok) {
    box.replaceChildren();
    const error = body.error || { message: "cannot read the inbox", hint: "" };
    note.textContent = error.message + " " + (error.hint || "");
    return;
  }
  note.textContent = body.shown === 0 ? `${body.agent} has no messages`
    : `the newest ${body.shown} messages (at most ${body.limit}), newest thread first; bold: not read yet`;
  box.replaceChildren(...body.threads.map((thread) => {
    const article = el("article", null, "thread");
    article.dataset.thread = thread.thread_id;
    article.appendChild(el("h3", (thread.subject || "(no subject)") + " · " + thread.thread_id));
    const table = el("table");
    const head = el("thead");
    const titles = el("tr");
    for (const title of ["from", "to", "sent", "message"]) titles.appendChild(el("th", title));
    head.appendChild(titles);
    const rows = el("tbody");
    for (const m of thread.messages) {
      const text = el("div", m.body + (m.cut ? " …(cut)" : ""), "body");
      const tr = row([m.from, m.to, timeOf(m.sent_at), text], m.unread ? "unread" : "");
      tr.dataset.message = m.id;
      rows.appendChild(tr);
    }
    table.append(head, rows);
    article.appendChild(table);
    return article;
  }));
}

function inboxUrl() {
  return inbox.agent ? "/dashboard/inbox?agent=" + encodeURIComponent(inbox.agent) : "";
}

const followInbox = follower(inboxUrl, drawThreads);

function showInbox(agent) {
  inbox.agent = agent.trim();
  inbox.drawn = "";
  document.getElementById("inbox-agent").value = inbox.agent;
  document.getElementById("inbox").dataset.agent = inbox.agent;
  document.getElementById("threads").replaceChildren();
  document.getElementById("inbox-note").textContent = inbox.agent ? "loading…" : "";
  followInbox();
}

// Called by app.js's render with each new snapshot.
function inboxChanged() {
  if (inbox.agent) followInbox();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelector("#agents tbody").addEventListener("click", (event) => {
    const tr = event.target.closest("tr");
    if (tr && tr.cells.length > 1) showInbox(tr.cells[0].textContent);
  });
  document.getElementById("inbox-form").addEventListener("submit", (event) => {
    event.preventDefault();
    showInbox(document.getElementById("inbox-agent").value);
  });
});
