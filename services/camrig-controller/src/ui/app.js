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
  // The controller takes only JSON for anything that changes state (no cross-site forms).
  if (method !== "GET") {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body === undefined ? {} : body);
  }
  let resp;
  try {
    resp = await fetch(url, opts);
  } catch (e) {
    throw new Error("the controller did not answer: " + e.message);
  }
  if (resp.status === 401) {
    location.replace("/login");
    throw new Error("logged out; log in again");
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
$("btn-stop").addEventListener("click", () => command(async () => {
  try {
    const t = await api("POST", "/api/takes/current/stop");
    if (t.state === "cancelled") showNotice("take " + t.name + " cancelled: STOP came before its start instant, nothing was recorded");
    const lost = t.nodes.filter((n) => n.state === "failed").map((n) => n.address);
    if (lost.length) showError("did not stop (lost during the take): " + lost.join(", ") + "; if one still records when it is back, abort it from the node list");
  } finally { await refresh(); }
}));
// The recovery for a node that did not take STOP (or records a take the controller does not run).
$("nodes").addEventListener("click", (ev) => {
  const btn = ev.target.closest("button[data-abort]");
  if (!btn) return;
  const address = btn.dataset.address;
  if (!confirm("Abort node " + address + "?\n\nIt stops recording now; what it recorded is kept on the node.")) return;
  command(async () => {
    const r = await api("POST", "/api/nodes/" + btn.dataset.abort + "/abort");
    showNotice("node " + r.address + (r.node_take ? " aborted take " + r.node_take + "; what it recorded is kept" : " was not recording"));
    await refresh();
  });
});
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
  const ver = ev.target.closest("button[data-verify]");
  if (ver) {
    const name = ver.dataset.verify;
    command(async () => {
      const r = await api("POST", "/api/takes/" + encodeURIComponent(name) + "/verify");
      if (r.ok) showNotice("take " + name + ": all " + r.files_checked + " sorted files still match their manifests");
      else showError("take " + name + ": " + r.failed.length + " file(s) no longer verified (" + r.failed.map((f) => f.address + " " + f.name + ": " + f.reason).join("; ") + "); DOWNLOAD fetches them again");
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
  // Camera settings never change during a take (the nodes refuse too).
  for (const id of ["btn-settings-apply", "btn-settings-lock", "btn-settings-unlock"]) {
    $(id).disabled = busy || !!current;
    $(id).title = current ? "camera settings do not change during a take" : "";
  }
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

function phaseCell(p) {
  if (!p) return "–";
  const e = p.error_ns.p99;
  const err = e >= 1e6 ? (e / 1e6).toFixed(1) + " ms" : Math.round(e / 1e3) + " µs";
  const cls = p.state === "locked" ? "good" : "warn";
  const title = p.reason ? ' title="' + esc(p.reason) + '"' : "";
  return '<span class="phase phase-' + p.state + " " + cls + '"' + title + ">" + esc(p.state) +
    '</span> <span class="node-sub">±' + err + "</span>";
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
    // Phase lock per camera: state and the last second's p99 error against the rig's grid.
    const phase = s ? cams.map((c) => phaseCell(c.phase)).join(" / ") : "–";
    const sub = [n.name, s && cams.map((c) => c.model + " " + c.mode).join(", "), health, n.error, s && s.problem]
      .filter(Boolean).map(esc).join(" · ") +
      (n.health_warning ? ' <span class="warn">' + esc(n.health_warning) + "</span>" : "");
    // Recording with no take running, or after a STOP it did not take: offer the abort.
    const current = rig.current_take;
    const stray = n.reachable && s && s.state !== "idle" && (!current || current.stop_at_ns != null || current.name !== s.take);
    const abort = stray ? ' <button class="btn btn-small btn-danger" data-abort="' + n.index + '" data-address="' + esc(n.address) + '" title="stop this node now; what it recorded is kept">abort node</button>' : "";
    return '<tr data-address="' + esc(n.address) + '">' +
      '<td data-label="node"><div class="node-addr">' + esc(n.address) + abort + '</div><div class="node-sub">' + sub + "</div></td>" +
      '<td data-label="state" class="state state-' + state + '">' + esc(state) + "</td>" +
      '<td data-label="take">' + esc(s && s.take ? s.take : "–") + "</td>" +
      '<td data-label="frames" class="num frames">' + (frames == null ? "–" : frames) + "</td>" +
      '<td data-label="fps" class="num">' + fps + "</td>" +
      '<td data-label="drops" class="num ' + (drops ? "bad" : "") + '">' + (drops == null ? "–" : drops) + "</td>" +
      '<td data-label="disk free" class="num">' + (s ? bytes(s.disk_free_bytes) : "–") + "</td>" +
      '<td data-label="clock offset" class="num ' + clockClass + '">' + clock + sync + "</td>" +
      '<td data-label="phase lock" class="num">' + phase + "</td>" +
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
    const verdict = t.sync_verdict || (t.sync_error ? "error" : null);
    const verdictTitle = t.sync_error ? "no sync report: " + t.sync_error : "sync verdict; open for the timing of every camera";
    return '<li class="take" data-take="' + esc(t.name) + '">' +
      '<div class="take-head"><span class="take-name">' + esc(t.name) + "</span>" +
      '<span class="badge badge-' + esc(badge) + ' download-state">' + esc(label) + "</span>" +
      (verdict ? '<a href="#take/' + encodeURIComponent(t.name) + '" class="badge badge-' + esc(verdict) + ' sync-verdict" title="' + esc(verdictTitle) + '">sync ' + esc(verdict) + "</a>" : "") +
      '<span class="take-meta">' + esc(utc(t.start_at_ns)) + (dur ? " · " + dur : "") +
      (t.markers.length ? " · " + t.markers.length + " marker" + (t.markers.length > 1 ? "s" : "") : "") +
      (t.override_clock ? " · clock override" : "") + (allDeleted ? " · deleted from nodes" : "") + "</span>" +
      '<span class="spacer"></span>' +
      (t.download === "verified" ? '<a class="btn btn-small" href="#take/' + encodeURIComponent(t.name) + '">timing &amp; export</a>' : "") +
      (canDownload ? '<button class="btn btn-small" data-download="' + esc(t.name) + '">download</button>' : "") +
      (t.state === "stopped" && t.nodes.some((n) => (n.files || []).some((f) => f.state === "verified")) && t.download !== "downloading"
        ? '<button class="btn btn-small" data-verify="' + esc(t.name) + '" title="hash the sorted copies again against the manifests">verify</button>' : "") +
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
// ---------- camera settings ----------
let cameraSettings = null;
// A setting as shown: "auto", a number, a mode or red/blue gains.
function settingText(v) {
  if (v == null) return "–";
  if (Array.isArray(v)) return v.join(" / ");
  if (typeof v === "object") return v.red + " / " + v.blue;
  return String(v);
}
function renderCameraSettings() {
  const v = cameraSettings;
  if (!v) return;
  $("settings-locked").textContent = v.locked ? "(locked)" : "";
  $("settings-mismatch").textContent = v.mismatched && v.mismatched.length
    ? "not using the settings last applied (restarted?): " + v.mismatched.join(", ") + " — APPLY or LOCK again"
    : "";
  const rows = [];
  const refs = ['<option value="">each camera\'s own values</option>'];
  for (const n of v.nodes) {
    if (n.error) {
      rows.push(`<tr><td>${esc(n.name || n.address)}</td><td colspan="6" class="bad">${esc(n.error)}</td></tr>`);
      continue;
    }
    for (const c of n.cameras) {
      const s = c.settings, a = c.applied || {};
      const cell = (want, got) => `${esc(settingText(want))}<span class="muted small"> ${got == null ? "" : "→ " + esc(settingText(got))}</span>`;
      const differs = n.matches === false ? ' <span class="bad small">not as applied</span>' : "";
      rows.push(`<tr data-node="${esc(n.address)}" data-camera="${c.index}"><td>${esc(n.name || n.address)}${differs}</td>` +
        `<td>${c.index} ${esc(c.model)}</td><td class="exposure">${cell(s.exposure_us, a.exposure_us)}</td>` +
        `<td class="gain">${cell(s.analogue_gain, a.analogue_gain)}</td><td class="awb">${cell(s.awb, a.colour_gains)}</td>` +
        `<td>${cell(s.focus, a.lens_position)}</td>` +
        `<td class="fps">${esc(s.frame_rate === "auto" ? "auto (" + c.configured_fps + ")" : settingText(s.frame_rate))}</td></tr>`);
      refs.push(`<option value="${esc(n.address)}:${c.index}">${esc(n.name || n.address)} camera ${c.index}</option>`);
    }
  }
  $("settings-cameras").innerHTML = rows.join("");
  const sel = $("settings-reference"), chosen = sel.value;
  sel.innerHTML = refs.join("");
  sel.value = chosen;
}
async function loadCameraSettings() {
  try { cameraSettings = await api("GET", "/api/camera-settings"); renderCameraSettings(); } catch (_) { /* shown on the next action */ }
}
function settingValue(id) {
  const t = $(id).value.trim();
  if (t === "" || t === "auto") return "auto";
  const n = Number(t);
  return Number.isFinite(n) ? n : t;
}
$("settings-form").addEventListener("submit", (e) => {
  e.preventDefault();
  command(async () => {
    const awbText = $("set-awb").value.trim() || "auto";
    const gains = awbText.split(",").map(Number);
    const body = {
      exposure_us: settingValue("set-exposure"),
      analogue_gain: settingValue("set-gain"),
      awb: gains.length === 2 && gains.every(Number.isFinite) ? { red: gains[0], blue: gains[1] } : awbText,
      focus: settingValue("set-focus"),
      noise_reduction: $("set-nr").value,
      frame_rate: settingValue("set-fps"),
    };
    const nodes = $("set-nodes").value.split(",").map((a) => a.trim()).filter(Boolean);
    const query = nodes.length ? "?nodes=" + encodeURIComponent(nodes.join(",")) : "";
    cameraSettings = await api("PUT", "/api/camera-settings" + query, body);
    renderCameraSettings();
  });
});
$("btn-settings-lock").addEventListener("click", () => command(async () => {
  const ref = $("settings-reference").value;
  let body = {};
  if (ref) {
    const i = ref.lastIndexOf(":");
    body = { reference: { node: ref.slice(0, i), camera: Number(ref.slice(i + 1)) } };
  }
  cameraSettings = await api("POST", "/api/camera-settings/lock", body);
  renderCameraSettings();
}));
$("btn-settings-unlock").addEventListener("click", () => command(async () => {
  cameraSettings = await api("POST", "/api/camera-settings/unlock", {});
  renderCameraSettings();
}));
setInterval(() => { if (!busy) loadCameraSettings(); }, 2000);

async function refresh() {
  try {
    rig = await api("GET", "/api/rig");
    takes = await api("GET", "/api/takes");
    renderRig();
    renderTakes();
    renderTakePage();
  } catch (e) { showError(e.message); }
}

// ---------- take page: sync verdict, per-camera timing chart, export ----------
let page = { name: null, verdict: null, report: null, csv: null };

function pageTake() {
  const m = location.hash.match(/^#take\/(.+)$/);
  return m ? decodeURIComponent(m[1]) : null;
}

window.addEventListener("hashchange", () => { page = { name: null }; renderTakePage(); });
$("tp-close").addEventListener("click", (ev) => { ev.preventDefault(); history.replaceState(null, "", location.pathname); page = { name: null }; renderTakePage(); });
$("btn-export").addEventListener("click", () => command(async () => {
  const name = pageTake();
  await api("POST", "/api/takes/" + encodeURIComponent(name) + "/export", { format: $("tp-format").value, trim_common: $("tp-trim").checked });
  await refresh();
}));

function renderTakePage() {
  const name = pageTake();
  $("take-page").classList.toggle("hidden", !name);
  if (!name) return;
  const t = takes.find((x) => x.name === name);
  $("tp-name").textContent = name;
  const verdict = t ? (t.sync_verdict || (t.sync_error ? "error" : "none")) : "none";
  $("tp-verdict").className = "badge badge-" + verdict;
  $("tp-verdict").textContent = verdict === "none" ? "no report yet" : "sync " + verdict;
  const e = t && t.export;
  $("btn-export").disabled = !t || t.download !== "verified" || (e && e.state === "running");
  $("tp-export").innerHTML = !e ? "" : '<span id="tp-export-state" class="' + (e.state === "failed" ? "bad" : e.state === "done" ? "good" : "warn") + '">export ' + esc(e.state) + "</span> · " +
    esc(e.format) + (e.trim_common ? ", trimmed" : "") + " · " + e.cameras_done + "/" + e.cameras_total + " cameras · " + esc(e.out_dir) +
    (e.message ? " · " + esc(e.message) : "") +
    (e.state === "running" ? '<div class="bar"><div style="width:' + (e.cameras_total ? (100 * e.cameras_done / e.cameras_total).toFixed(1) : 0) + '%"></div></div>' : "");
  if (t && t.sync_error) { $("tp-summary").innerHTML = '<div class="reason">' + esc(t.sync_error) + "</div>"; $("tp-cameras").innerHTML = ""; return; }
  const key = name + ":" + verdict;
  if (page.name === key) return;
  page = { name: key };
  if (verdict === "none") { $("tp-summary").textContent = "The sync report is made when the take is downloaded and verified."; $("tp-cameras").innerHTML = ""; return; }
  Promise.all([
    api("GET", "/api/takes/" + encodeURIComponent(name) + "/sync-report"),
    fetch("/api/takes/" + encodeURIComponent(name) + "/frames.csv", { credentials: "same-origin" }).then((r) => r.ok ? r.text() : Promise.reject(new Error("frames table: HTTP " + r.status))),
  ]).then(([report, csv]) => { if (page.name === key) drawTakePage(report, csv); }).catch((err) => showError(err.message));
}

function us(v) { return v == null ? "–" : Math.abs(v) >= 1000 ? (v / 1000).toFixed(2) + " ms" : v.toFixed(1) + " µs"; }

function drawTakePage(r, csv) {
  $("tp-summary").innerHTML =
    "<div>skew p50 " + us(r.skew_us.p50) + " · p99 " + us(r.skew_us.p99) + " · max " + us(r.skew_us.max) +
    " · <strong>bound " + (r.skew_bound_us == null ? "unknown" : us(r.skew_bound_us)) + "</strong> vs tolerance " + us(r.tolerance_us) +
    " · common " + r.common.frames + " frames · " + r.fps + " fps</div>" +
    r.clock.map((c) => '<div class="take-meta">clock ' + esc(c.node) + ": offset " + us(c.offset_start_us) + " → " + us(c.offset_stop_us) + ", bound " + us(c.bound_us) + "</div>").join("") +
    r.reasons.map((x) => '<div class="reason">' + esc(x) + "</div>").join("");
  // frames.csv: slot,node,camera,segment,frame_index,timestamp_ns,grid_error_ns
  const series = {};
  const lines = csv.split("\n");
  const header = lines[0].split(",");
  const col = (n) => header.indexOf(n);
  const [cs, cn, cc, ce] = [col("slot"), col("node"), col("camera"), col("grid_error_ns")];
  for (let i = 1; i < lines.length; i++) {
    if (!lines[i]) continue;
    const f = lines[i].split(",");
    const k = f[cn] + " " + f[cc];
    (series[k] = series[k] || []).push([Number(f[cs]), Number(f[ce]) / 1000]);
  }
  let s0 = Infinity, s1 = -Infinity;
  for (const pts of Object.values(series)) for (const p of pts) { if (p[0] < s0) s0 = p[0]; if (p[0] > s1) s1 = p[0]; }
  // A long take has more frames than the chart has pixels: per pixel column keep the frame
  // farthest from the grid, so no spike is lost.
  const thin = (pts, W) => {
    if (pts.length <= 2 * W) return pts;
    const cols = new Map();
    for (const p of pts) {
      const c = Math.round(((p[0] - s0) / Math.max(1, s1 - s0)) * W);
      const q = cols.get(c);
      if (!q || Math.abs(p[1]) > Math.abs(q[1])) cols.set(c, p);
    }
    return [...cols.values()].sort((a, b) => a[0] - b[0]);
  };
  $("tp-cameras").innerHTML = r.cameras.map((c) => {
    const pts = thin(series[c.node + " " + c.camera] || [], 800);
    const lim = pts.reduce((m, p) => Math.max(m, Math.abs(p[1])), 100) * 1.1;
    const W = 800, H = 160, x = (s) => ((s - s0) / Math.max(1, s1 - s0)) * (W - 50) + 45, y = (v) => H / 2 - (v / lim) * (H / 2 - 10);
    const path = pts.map((p, i) => (i ? "L" : "M") + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1)).join("");
    const drops = c.drops.map((d) => '<line class="drop" x1="' + x(d.slot).toFixed(1) + '" x2="' + x(d.slot).toFixed(1) + '" y1="' + (H - 12) + '" y2="' + H + '"><title>drop: slot ' + d.slot + "</title></line>").join("");
    const marks = r.markers.map((m) => '<line class="marker" x1="' + x(m.slot).toFixed(1) + '" x2="' + x(m.slot).toFixed(1) + '" y1="0" y2="' + H + '"><title>marker: ' + esc(m.note) + "</title></line>").join("");
    const ph = c.phase;
    return '<div class="tp-camera" data-camera="' + esc(c.node + " " + c.camera) + '">' +
      '<svg viewBox="0 0 ' + W + " " + H + '" preserveAspectRatio="none" role="img" aria-label="deviation from the frame grid per frame, ' + esc(c.node + " " + c.camera) + '">' +
      '<line class="grid-line" x1="45" x2="' + W + '" y1="10" y2="10"/><line class="grid-line" x1="45" x2="' + W + '" y1="' + (H - 10) + '" y2="' + (H - 10) + '"/>' +
      '<line class="zero" x1="45" x2="' + W + '" y1="' + H / 2 + '" y2="' + H / 2 + '"/>' +
      '<text x="2" y="14">+' + esc(us(lim)) + '</text><text x="2" y="' + (H / 2 + 3) + '">0</text><text x="2" y="' + (H - 6) + '">−' + esc(us(lim)) + "</text>" +
      '<path class="trace" d="' + path + '"/>' + drops + marks + "</svg>" +
      '<dl class="tp-numbers"><dt>camera</dt><dd>' + esc(c.node + " " + c.camera) + "</dd>" +
      "<dt>frames</dt><dd>" + c.frames + "</dd><dt>drops</dt><dd class=\"tp-drops\">" + c.drops.length + "</dd>" +
      "<dt>grid dev. p50</dt><dd>" + us(c.grid_deviation_us.p50) + "</dd><dt>p99</dt><dd>" + us(c.grid_deviation_us.p99) + "</dd><dt>max</dt><dd>" + us(c.grid_deviation_us.max) + "</dd>" +
      (ph ? "<dt>lock at start</dt><dd>" + esc(ph.state_at_start) + "</dd><dt>phase p99</dt><dd>" + us(ph.error_ns.p99 / 1000) + "</dd><dt>lock losses</dt><dd>" + ph.lock_losses + "</dd>" : "<dt>phase lock</dt><dd>not recorded</dd>") +
      "</dl></div>";
  }).join("");
}

function connect() {
  const es = new EventSource("/api/events");
  es.addEventListener("rig", (ev) => { rig = JSON.parse(ev.data); $("conn").classList.add("hidden"); renderRig(); });
  es.addEventListener("takes", (ev) => {
    // Keep open file lists open across re-renders.
    const open = new Set([...document.querySelectorAll("details.files[open]")].map((d) => d.closest(".tn").dataset.node + "@" + d.closest(".take").dataset.take));
    takes = JSON.parse(ev.data);
    renderTakes();
    renderTakePage();
    document.querySelectorAll("details.files").forEach((d) => {
      if (open.has(d.closest(".tn").dataset.node + "@" + d.closest(".take").dataset.take)) d.open = true;
    });
  });
  es.onerror = () => $("conn").classList.remove("hidden");
}

$("btn-logout").onclick = () => command(async () => {
  await api("POST", "/api/logout");
  location.replace("/login");
});
$("password-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  command(async () => {
    const r = await api("POST", "/api/password", { current: $("password-current").value, new: $("password-new").value });
    $("password-form").reset();
    showNotice(r.message);
  });
});

renderControls();
refresh();
connect();
loadCameraSettings();
