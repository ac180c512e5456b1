// camrig web UI: live rig state over server-sent events (/api/events), commands over the
// REST API (/api/...). No build step, no framework: the DOM is re-rendered from each event.
"use strict";

const $ = (id) => document.getElementById(id);
let rig = null;
let takes = [];
let busy = false;

// ---------- formatting ----------
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) =>
  ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
function bytes(n) {
  if (n == null) return "–";
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(n < 10 ? 2 : 1) : n) + " " + u[i];
}
function ms(ns, digits = 3) { return ns == null ? "–" : (ns / 1e6).toFixed(digits) + " ms"; }
function ago(ns) {
  if (ns == null || !rig) return "never";
  const s = (rig.controller_now_ns - ns) / 1e9;
  if (s < 1.5) return "now";
  if (s < 90) return Math.round(s) + " s ago";
  return Math.round(s / 60) + " min ago";
}
function utc(ns) { return ns ? new Date(ns / 1e6).toISOString().replace("T", " ").slice(0, 19) + " UTC" : ""; }
function duration(ns) {
  if (ns == null || ns < 0) return "0:00";
  const s = Math.floor(ns / 1e9), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return (h ? h + ":" + String(m).padStart(2, "0") : m) + ":" + String(sec).padStart(2, "0");
}

// ---------- errors ----------
function showError(msg, cls = "error") {
  const div = document.createElement("div");
  div.className = cls;
  div.textContent = msg;
  const close = document.createElement("button");
  close.textContent = "×";
  close.setAttribute("aria-label", "dismiss");
  close.onclick = () => div.remove();
  div.appendChild(close);
  $("errors").prepend(div);
  while ($("errors").children.length > 4) $("errors").lastChild.remove();
}
function showNotice(msg) { showError(msg, "error notice"); }
function clearErrors() { $("errors").innerHTML = ""; }

async function api(method, url, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(url, opts);
  } catch (e) {
    throw new Error("the controller did not answer: " + e.message);
  }
  const text = await resp.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (!resp.ok) {
    let msg = (json && json.error) || text || resp.statusText;
    if (json && json.nodes && json.nodes.length) {
      msg += "\n" + json.nodes.map((n) => "• " + n.address + ": " + n.error).join("\n");
    }
    throw new Error(msg);
  }
  return json;
}
async function command(fn) {
  if (busy) return;
  busy = true;
  renderControls();
  try { clearErrors(); await fn(); } catch (e) { showError(e.message); } finally { busy = false; renderControls(); }
}

// ---------- actions ----------
$("start-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = $("take-name").value.trim();
  command(async () => {
    await api("POST", "/api/takes", {
      name,
      allow_partial: $("allow-partial").checked,
      override_clock: $("override-clock").checked,
      override_health: $("override-health").checked,
    });
    $("take-name").value = suggestNext(name);
    await refresh();
  });
});
$("mark-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const note = $("mark-note").value;
  command(async () => {
    const m = await api("POST", "/api/takes/current/mark", { note });
    $("mark-note").value = "";
    const failed = m.nodes.filter((n) => !n.ok);
    if (failed.length) showError("MARK not taken by " + failed.map((n) => n.address + ": " + n.error).join("; "));
    await refresh();
  });
});
$("btn-stop").addEventListener("click", () => command(async () => { await api("POST", "/api/takes/current/stop"); await refresh(); }));
$("btn-download-all").addEventListener("click", () => command(async () => {
  const r = await api("POST", "/api/downloads");
  if (!r.jobs.length) showError("nothing to download: every stopped take is verified");
  await refresh();
}));
$("takes").addEventListener("click", (ev) => {
  const del = ev.target.closest("button[data-delete]");
  if (del) {
    const name = del.dataset.delete;
    const ok = confirm("Delete take \"" + name + "\" from the nodes?\n\n" +
      "The controller first checks its verified copies in video_downloads/" + name + "/ again; " +
      "then every node removes its recording of this take for good.");
    if (!ok) return;
    command(async () => {
      const t = await api("POST", "/api/takes/" + encodeURIComponent(name) + "/delete-from-nodes");
      const n = t.nodes.filter((x) => x.node_deletion === "deleted").length;
      showNotice("take " + name + " deleted from " + n + " node" + (n === 1 ? "" : "s") + "; the verified copies stay on the controller");
      await refresh();
    });
    return;
  }
  const btn = ev.target.closest("button[data-download]");
  if (!btn) return;
  const name = btn.dataset.download;
  command(async () => { await api("POST", "/api/takes/" + encodeURIComponent(name) + "/download"); await refresh(); });
});

// take_01 -> take_02: the next take is usually the same scene.
function suggestNext(name) {
  const m = name.match(/^(.*?)(\d+)$/);
  if (!m) return name;
  const next = String(Number(m[2]) + 1).padStart(m[2].length, "0");
  return m[1] + next;
}

// ---------- rendering ----------
function renderControls() {
  const current = rig && rig.current_take;
  $("btn-start").disabled = busy || !rig || !!current;
  $("btn-mark").disabled = busy || !current;
  $("btn-stop").disabled = busy || !current;
  $("btn-download-all").disabled = busy;
}

function renderRig() {
  if (!rig) return;
  const pill = $("rig-state");
  pill.textContent = rig.state;
  pill.className = "pill pill-" + rig.state;
  $("clock").textContent = new Date(rig.controller_now_ns / 1e6).toISOString().slice(11, 19) + " UTC";
  $("version").textContent = rig.version;
  $("sync-note").textContent = rig.require_node_sync
    ? "· offset limit " + rig.max_clock_offset_ms + " ms, node clock sync required"
    : "· offset limit " + rig.max_clock_offset_ms + " ms, node clock sync NOT required (single-host rig)";

  const blockers = rig.current_take ? [] : rig.start_blockers;
  $("blockers").innerHTML = blockers.map((b) => "<div>" + esc(b) + "</div>").join("");

  const cur = rig.current_take;
  $("current").classList.toggle("hidden", !cur);
  if (cur) {
    $("current-name").textContent = cur.name;
    const recording = cur.nodes.filter((n) => n.state === "recording").length;
    $("current-state").textContent = rig.state + " · " + recording + "/" + cur.nodes.length + " nodes recording" +
      (cur.override_clock ? " · clock override" : "") + (cur.allow_partial ? " · partial allowed" : "");
    $("current-elapsed").textContent = duration(rig.controller_now_ns - cur.start_at_ns);
    $("current-markers").innerHTML = cur.markers.map((m) =>
      "<li>" + esc(duration(m.at_ns - cur.start_at_ns)) + " " + esc(m.note || "(no note)") + "</li>").join("");
    // Drops as they happen: every node's recent bursts of this take, newest last.
    const drops = [];
    for (const n of rig.nodes) {
      if (!n.status || n.status.take !== cur.name) continue;
      n.status.cameras.forEach((c, i) => (c.drop_bursts || []).forEach((b) => drops.push(
        { at: b.at_ns, text: n.address + " cam" + (i + 1) + ": " + b.frames + " frame(s) lost (" + b.cause.replace("_", " ") +
          ") before frame " + b.before_frame + " at " + duration(b.at_ns - cur.start_at_ns) })));
    }
    drops.sort((a, b) => a.at - b.at);
    $("current-drops").innerHTML = drops.slice(-8).map((d) => '<li class="bad">' + esc(d.text) + "</li>").join("");
  }
  renderNodes();
  renderPreviews();
  renderControls();
}

function renderNodes() {
  const rows = rig.nodes.map((n) => {
    const s = n.status;
    const cams = s ? s.cameras : [];
    const sum = (f) => cams.reduce((a, c) => a + (c[f] || 0), 0);
    const state = !n.reachable ? "unreachable" : s.state;
    const frames = s ? (s.state === "idle" ? sum("frames") : sum("take_frames")) : null;
    const fps = s ? cams.map((c) => c.fps.toFixed(1)).join(" / ") : "–";
    const drops = s ? sum("drops") : null;
    let clock = "–", clockClass = "";
    if (n.clock) {
      clock = ms(n.clock.offset_ns) + ' <span class="node-sub">rtt ' + ms(n.clock.rtt_ns, 2) + "</span>";
      clockClass = Math.abs(n.clock.offset_ns) > rig.max_clock_offset_ms * 1e6 ? "bad" : "good";
    }
    const sync = s ? (s.clock.synced ? "" : ' <span class="warn" title="the node\'s kernel clock is not NTP-synchronised">unsynced</span>') : "";
    const h = s && s.health;
    const health = h ? [
      h.cpu_temp_c == null ? "temp unknown" : h.cpu_temp_c.toFixed(0) + " °C",
      h.throttling == null ? "throttling unknown" : null,
      Math.round(h.recordable_seconds / 60) + " min of disk",
    ].filter(Boolean).join(", ") : null;
    const sub = [n.name, s && cams.map((c) => c.model + " " + c.mode).join(", "), health, n.error, s && s.problem]
      .filter(Boolean).map(esc).join(" · ") +
      (n.health_warning ? ' <span class="warn">' + esc(n.health_warning) + "</span>" : "");
    return '<tr data-address="' + esc(n.address) + '">' +
      '<td data-label="node"><div class="node-addr">' + esc(n.address) + '</div><div class="node-sub">' + sub + "</div></td>" +
      '<td data-label="state" class="state state-' + state + '">' + esc(state) + "</td>" +
      '<td data-label="take">' + esc(s && s.take ? s.take : "–") + "</td>" +
      '<td data-label="frames" class="num frames">' + (frames == null ? "–" : frames) + "</td>" +
      '<td data-label="fps" class="num">' + fps + "</td>" +
      '<td data-label="drops" class="num ' + (drops ? "bad" : "") + '">' + (drops == null ? "–" : drops) + "</td>" +
      '<td data-label="disk free" class="num">' + (s ? bytes(s.disk_free_bytes) : "–") + "</td>" +
      '<td data-label="clock offset" class="num ' + clockClass + '">' + clock + sync + "</td>" +
      '<td data-label="last seen" class="num ' + (n.reachable ? "" : "bad") + '">' + ago(n.last_seen_ns) + "</td>" +
      "</tr>";
  });
  $("nodes").innerHTML = rows.join("");
}

// Preview tiles persist between renders so images do not flicker; each refreshes ~1/s.
const previewTiles = new Map();
function renderPreviews() {
  const wanted = new Set();
  for (const n of rig.nodes) {
    const count = n.status ? n.status.cameras.length : 0;
    for (let c = 1; c <= count; c++) {
      const key = n.index + "/" + c;
      wanted.add(key);
      let tile = previewTiles.get(key);
      if (!tile) {
        tile = document.createElement("div");
        tile.className = "preview";
        tile.innerHTML = '<img alt=""><span class="label"></span><span class="off hidden"></span>';
        const img = tile.querySelector("img");
        img.onload = () => { img.dataset.loading = ""; tile.querySelector(".off").classList.add("hidden"); };
        img.onerror = () => { img.dataset.loading = ""; const off = tile.querySelector(".off"); off.textContent = "no preview"; off.classList.remove("hidden"); };
        tile.dataset.node = n.index;
        tile.dataset.camera = c;
        previewTiles.set(key, tile);
        $("previews").appendChild(tile);
      }
      tile.querySelector(".label").textContent = n.address + (count > 1 ? " · cam" + c : "");
      tile.dataset.reachable = n.reachable ? "1" : "";
    }
  }
  for (const [key, tile] of previewTiles) {
    if (!wanted.has(key)) { tile.remove(); previewTiles.delete(key); }
  }
}
setInterval(() => {
  if (document.hidden) return;
  for (const tile of previewTiles.values()) {
    const img = tile.querySelector("img");
    if (!tile.dataset.reachable) {
      const off = tile.querySelector(".off");
      off.textContent = "node unreachable";
      off.classList.remove("hidden");
      continue;
    }
    if (img.dataset.loading) continue; // do not pile up requests on a slow link
    img.dataset.loading = "1";
    img.src = "/api/nodes/" + tile.dataset.node + "/cameras/" + tile.dataset.camera + "/preview.jpg?t=" + Date.now();
  }
}, 1000);

function renderTakes() {
  $("takes-empty").classList.toggle("hidden", takes.length > 0);
  $("takes").innerHTML = takes.map((t) => {
    const badge = t.state === "stopped" ? t.download : t.state;
    const label = { none: "not downloaded", verified: "verified", downloading: "downloading", partial: "partly verified", failed: "download failed" }[badge] || badge;
    const dur = t.stop_at_ns ? duration(t.stop_at_ns - t.start_at_ns) : "";
    const nodes = t.nodes.map((n) => renderTakeNode(t, n)).join("");
    const canDownload = t.state === "stopped" && t.download !== "verified" && t.download !== "downloading";
    const recorded = t.nodes.filter((n) => n.download !== "none" || n.node_deletion !== "none" || (n.files || []).length);
    const allDeleted = recorded.length > 0 && recorded.every((n) => n.node_deletion === "deleted");
    const canDelete = t.state === "stopped" && t.download === "verified" && !allDeleted;
    const delTitle = allDeleted ? "already deleted from every node" : canDelete ? "remove this take from the nodes (the verified copies stay here)" : "download and verify first";
    return '<li class="take" data-take="' + esc(t.name) + '">' +
      '<div class="take-head"><span class="take-name">' + esc(t.name) + "</span>" +
      '<span class="badge badge-' + esc(badge) + ' download-state">' + esc(label) + "</span>" +
      '<span class="take-meta">' + esc(utc(t.start_at_ns)) + (dur ? " · " + dur : "") +
      (t.markers.length ? " · " + t.markers.length + " marker" + (t.markers.length > 1 ? "s" : "") : "") +
      (t.override_clock ? " · clock override" : "") + (allDeleted ? " · deleted from nodes" : "") + "</span>" +
      '<span class="spacer"></span>' +
      (canDownload ? '<button class="btn btn-small" data-download="' + esc(t.name) + '">download</button>' : "") +
      (t.state === "stopped" ? '<button class="btn btn-small btn-danger" data-delete="' + esc(t.name) + '" title="' + esc(delTitle) + '"' + (canDelete ? "" : " disabled") + ">DELETE FROM NODES</button>" : "") +
      "</div>" +
      (t.override_note ? '<div class="take-meta warn">override: ' + esc(t.override_note) + "</div>" : "") +
      '<div class="take-nodes">' + nodes + "</div></li>";
  }).join("");
}

function renderTakeNode(t, n) {
  const files = n.files || [];
  const verified = files.filter((f) => f.state === "verified").length;
  const failed = files.filter((f) => f.state === "failed").length;
  const p = n.progress;
  let pct = 0, text = "", cls = "";
  if (n.download === "verified") { pct = 100; cls = "done"; text = verified + "/" + files.length + " files verified"; }
  else if (p && p.phase !== "verified" && p.phase !== "failed") {
    pct = p.bytes_total ? Math.min(100, (100 * p.bytes_done) / p.bytes_total) : 0;
    text = p.phase.replace(/_/g, " ") + " · " + bytes(p.bytes_done) + " / " + bytes(p.bytes_total);
    if (p.phase === "verifying") text = "verifying · " + p.files_verified + "/" + p.files_total + " files";
  } else if (n.download === "failed") { cls = "failed"; pct = 100; text = "failed"; }
  else { text = files.length ? verified + "/" + files.length + " files verified" : "not downloaded"; }
  const nodeState = n.state === "stopped" ? "" : ' <span class="' + (n.state === "recording" || n.state === "armed" ? "warn" : "bad") + '">' + esc(n.state) + "</span>";
  const reasons = [n.reason, n.download === "failed" ? n.download_reason : null,
    n.node_deletion === "failed" ? "not deleted from node: " + n.node_deletion_reason : null].filter(Boolean);
  const deletion = n.node_deletion === "deleted" ? ' <span class="muted node-deletion">deleted from node ' + esc(utc(n.node_deleted_ns)) + "</span>"
    : n.node_deletion === "deleting" ? ' <span class="warn node-deletion">deleting from node…</span>' : "";
  const fileList = files.length ? '<details class="files"><summary>' + files.length + " files" + (failed ? ", " + failed + " failed" : "") + "</summary><ul>" +
    files.map((f) => '<li><span class="fname">' + esc(f.name) + '</span><span class="muted">' + bytes(f.bytes) + "</span>" +
      '<span class="' + (f.state === "verified" ? "good" : f.state === "failed" ? "bad" : "muted") + '" title="' + esc(f.reason || "") + '">' + esc(f.state) + "</span></li>").join("") +
    "</ul></details>" : "";
  return '<div class="tn" data-node="' + esc(n.address) + '"><div><strong>' + esc(n.address) + "</strong>" + nodeState + deletion + "</div>" +
    '<div><div class="bar ' + cls + '"><div style="width:' + pct.toFixed(1) + '%"></div></div><div class="take-meta progress-text">' + esc(text) + "</div></div>" +
    reasons.map((r) => '<div class="tn-reason">' + esc(r) + "</div>").join("") +
    (fileList ? '<div style="grid-column:1/-1">' + fileList + "</div>" : "") + "</div>";
}

// ---------- live data ----------
async function refresh() {
  try {
    rig = await api("GET", "/api/rig");
    takes = await api("GET", "/api/takes");
    renderRig();
    renderTakes();
  } catch (e) { showError(e.message); }
}

function connect() {
  const es = new EventSource("/api/events");
  es.addEventListener("rig", (ev) => { rig = JSON.parse(ev.data); $("conn").classList.add("hidden"); renderRig(); });
  es.addEventListener("takes", (ev) => {
    // Keep open file lists open across re-renders.
    const open = new Set([...document.querySelectorAll("details.files[open]")].map((d) => d.closest(".tn").dataset.node + "@" + d.closest(".take").dataset.take));
    takes = JSON.parse(ev.data);
    renderTakes();
    document.querySelectorAll("details.files").forEach((d) => {
      if (open.has(d.closest(".tn").dataset.node + "@" + d.closest(".take").dataset.take)) d.open = true;
    });
  });
  es.onerror = () => $("conn").classList.remove("hidden");
}

renderControls();
refresh();
connect();
