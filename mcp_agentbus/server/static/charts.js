// The dashboard's charts of the last hour, drawn here as plain SVG: tasks completed per minute (with the
// failed attempts stacked on top), and the ready queues per capability (now as a bar, the hour as a small
// line). Data from GET /dashboard/stats, fetched when the page's snapshot changes (statsChanged, called
// by app.js's render) and every STATS_TICK_MS (a new minute comes without any event); each chart is
// redrawn only when what it shows changed. Also the dead tasks of the snapshot, in their own table.
"use strict";

const STATS_TICK_MS = 20000;
const FOLLOW_GAP_MS = 1000; // at most one request a second per follower, however busy the bus
const drawn = { throughput: "", depth: "", dead: "" };

// A GET of url() that runs one at a time and at most once every FOLLOW_GAP_MS; a call while one runs
// makes one more after it. draw(body, ok) gets each answer (the error body when not ok).
function follower(url, draw) {
  const f = { busy: false, again: false, at: 0 };
  return async function follow() {
    if (f.busy) { f.again = true; return; }
    f.busy = true;
    try {
      do {
        f.again = false;
        const wait = f.at + FOLLOW_GAP_MS - Date.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        f.at = Date.now();
        const target = url();
        if (!target) continue;
        const reply = await fetch(target, { headers: headers(), cache: "no-store" });
        if (reply.status === 401) return; // app.js asks for the token
        draw(await reply.json(), reply.ok, target);
      } while (f.again);
    } catch (err) {
      // app.js's status line tells of an unreachable server; the next change or tick tries again
    } finally {
      f.busy = false;
    }
  };
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function drawThroughput(stats) {
  const key = JSON.stringify([stats.minutes, stats.done, stats.failed, stats.dead]);
  if (key === drawn.throughput) return;
  drawn.throughput = key;
  const W = 620, H = 130, left = 34, bottom = 18, top = 6;
  const n = stats.minutes.length, step = (W - left) / n, plot = H - bottom - top;
  const most = Math.max(1, ...stats.done.map((d, i) => d + stats.failed[i]));
  const hour = (list) => list.reduce((a, b) => a + b, 0);
  const chart = svg("svg", {
    viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
    "data-hour-done": hour(stats.done), "data-current-done": stats.done[n - 1],
  });
  chart.appendChild(svg("title", {}, `tasks completed per minute over the last hour (at most ${most})`));
  chart.appendChild(svg("line", { x1: left, y1: H - bottom, x2: W, y2: H - bottom, class: "axis" }));
  chart.appendChild(svg("text", { x: left - 4, y: top + 10, "text-anchor": "end" }, most));
  chart.appendChild(svg("text", { x: left - 4, y: H - bottom, "text-anchor": "end" }, 0));
  stats.minutes.forEach((minute, i) => {
    const done = stats.done[i], failed = stats.failed[i], dead = stats.dead[i];
    const g = svg("g", { class: "minute", "data-minute": minute, "data-done": done, "data-failed": failed });
    g.appendChild(svg("title", {}, `${clock(minute)}: ${done} completed, ${failed} failed, ${dead} dead`));
    const x = left + i * step + 1, doneH = (done / most) * plot, failedH = (failed / most) * plot;
    g.appendChild(svg("rect", { x, y: top, width: step - 2, height: plot, class: "hit" }));
    if (done) {
      g.appendChild(svg("rect", { x, y: H - bottom - doneH, width: step - 2, height: doneH, class: "done" }));
    }
    if (failed) {
      g.appendChild(svg("rect", {
        x, y: H - bottom - doneH - failedH, width: step - 2, height: failedH, class: "failed",
      }));
    }
    chart.appendChild(g);
  });
  for (const i of [0, n / 2]) {
    chart.appendChild(svg("text", { x: left + i * step, y: H - 4 }, clock(stats.minutes[i])));
  }
  chart.appendChild(svg("text", { x: W, y: H - 4, "text-anchor": "end" }, "now"));
  document.getElementById("throughput-chart").replaceChildren(chart);
  document.getElementById("throughput-totals").textContent =
    `last hour: ${hour(stats.done)} completed · ${hour(stats.failed)} failed attempts · ` +
    `${hour(stats.dead)} dead · this minute so far: ${stats.done[n - 1]} completed`;
}

function sparkline(samples) {
  const W = 180, H = 24, most = Math.max(1, ...samples);
  const points = samples.map((v, i) => `${(i * W) / (samples.length - 1)},${H - 2 - (v / most) * (H - 4)}`);
  const line = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "spark" });
  const peak = Math.max(...samples);
  line.appendChild(svg("title", {}, `ready tasks at each minute's sample, then now: peak ${peak}`));
  line.appendChild(svg("polyline", { points: points.join(" ") }));
  return line;
}

function drawDepth(stats) {
  const key = JSON.stringify([stats.minutes[0], stats.ready_now, stats.ready, stats.capabilities]);
  if (key === drawn.depth) return;
  drawn.depth = key;
  const caps = Object.keys(stats.ready);
  const most = Math.max(1, ...Object.values(stats.ready_now));
  fill("depth", caps.map((cap) => {
    const now = stats.ready_now[cap];
    const bar = svg("svg", { viewBox: "0 0 150 14", width: 150, height: 14, class: "now" });
    bar.appendChild(svg("title", {}, `${now} ready now`));
    bar.appendChild(svg("rect", { x: 0, y: 2, width: (150 * now) / most, height: 10 }));
    const tr = row([cap, bar, now, sparkline([...stats.ready[cap].slice(0, -1), now])]);  // ends at now
    tr.dataset.cap = cap;
    tr.dataset.ready = String(now);
    return tr;
  }), "no ready tasks this hour");
  const hidden = stats.capabilities - caps.length;
  document.getElementById("depth-more").textContent = hidden > 0
    ? `${hidden} more capabilities with ready tasks are not shown (the deepest ${caps.length} are)` : "";
}

const followStats = follower(() => "/dashboard/stats", (stats, ok) => {
  if (!ok) return;
  drawThroughput(stats);
  drawDepth(stats);
});

function drawDead(snap) {
  const key = JSON.stringify([snap.dead, snap.dead_total]);
  if (key === drawn.dead) return;
  drawn.dead = key;
  fill("dead", snap.dead.map((t) => {
    const tr = row([t.id, t.title, t.attempts, t.error], "dead-task");
    tr.dataset.task = t.id;
    return tr;
  }), "no dead tasks");
  document.getElementById("dead-count").textContent = snap.dead_total > snap.dead.length
    ? `the latest ${snap.dead.length} of ${snap.dead_total}` : "";
}

// Called by app.js's render with each new snapshot.
function statsChanged(snap) {
  drawDead(snap);
  followStats();
}

setInterval(followStats, STATS_TICK_MS);
