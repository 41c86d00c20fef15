// Who may see what on the dashboard page: the tokens it holds (one per namespace, in sessionStorage), the
// login form that asks for one, the namespace picker, and connect(): GET /dashboard/access, then the
// namespace's stream (app.js's listen). headers() is what every request of the page carries.
"use strict";

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

// Called by app.js's start(): the namespace shown last in this tab, and the forms that change it.
function startAccess() {
  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    addToken(document.getElementById("token").value.trim());
    document.getElementById("token").value = "";
  });
  document.getElementById("add-token").addEventListener("click", () => askToken(""));
  document.getElementById("namespace-picker").addEventListener("change", (event) => show(event.target.value));
  state.namespace = sessionStorage.getItem(SHOWN);
  connect();
}
