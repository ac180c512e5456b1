// The login page: posts the password (or, from the demo's one-click link
// /login#token=..., the API token, which never reaches the server's logs as a URL) to
// /api/login, which sets the session cookie, then opens the rig's page.
"use strict";

async function logIn(body) {
  const resp = await fetch("/api/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (resp.ok) {
    location.replace("/");
    return;
  }
  let msg = resp.statusText;
  try { msg = (await resp.json()).error || msg; } catch (_) { /* not JSON */ }
  const errors = document.getElementById("errors");
  errors.textContent = "";
  const div = document.createElement("div");
  div.className = "error";
  div.textContent = msg;
  errors.appendChild(div);
}

document.getElementById("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  logIn({ password: document.getElementById("login-password").value });
});

const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("token")) {
  const token = fragment.get("token");
  history.replaceState(null, "", "/login");
  logIn({ token });
}
