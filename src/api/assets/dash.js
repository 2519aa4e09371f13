// sluice dashboard: one script for the hub's page and the node's
// (body[data-role]). No framework, no build step, no other host: the API
// that serves the page answers every request.
"use strict";

(function () {
  const role = document.body.dataset.role;
  const keyMeta = document.querySelector('meta[name="sluice-dashboard-key"]');
  const dashKey = keyMeta ? keyMeta.content : "";
  const HISTORY = 60; // samples kept per graph: a minute at one a second
  const history = new Map(); // identity -> {down: [], up: []}
  let token = sessionStorage.getItem("sluice-token") || "";
  let lastSnapshot = null;

  const $ = (sel, root) => (root || document).querySelector(sel);

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids) {
      if (kid === null || kid === undefined) continue;
      e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return e;
  }

  // ---------------------------------------------------------- formatting

  function bytes(n) {
    n = Number(n) || 0;
    const units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)) + " " + units[i];
  }

  function ago(ms) {
    if (!ms) return "never";
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 5) return "just now";
    if (s < 120) return s + " s ago";
    if (s < 7200) return Math.round(s / 60) + " min ago";
    if (s < 172800) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " days ago";
  }

  function pair(down, up) {
    return el("span", { class: "num" },
      el("span", { class: "down", "data-bytes": down, title: down + " bytes down" }, "↓ " + bytes(down)),
      " / ",
      el("span", { class: "up", "data-bytes": up, title: up + " bytes up" }, "↑ " + bytes(up)));
  }

  // ---------------------------------------------------------- requests

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (dashKey) h["X-Sluice-Dashboard"] = dashKey;
    if (token) h["Authorization"] = "Bearer " + token;
    return h;
  }

  function askToken() {
    const f = $("#token-form");
    if (f.hidden) { f.hidden = false; $("#token").focus(); }
  }

  async function api(method, path, body) {
    const opt = { method, headers: headers(), cache: "no-store" };
    if (body !== undefined) {
      opt.body = JSON.stringify(body);
      opt.headers["Content-Type"] = "application/json";
    }
    const r = await fetch(path, opt);
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (r.status === 401) askToken();
    if (!r.ok) {
      const msg = data && data.error ? data.error : r.status + " " + r.statusText;
      throw new Error(msg);
    }
    return data;
  }

  function say(text, ok) {
    const m = $("#message");
    m.textContent = text;
    m.className = "message " + (ok ? "ok" : "bad");
  }

  // ---------------------------------------------------------- live feed

  // Server-sent events read through fetch, so the page can send its key
  // and token as headers (EventSource cannot).
  async function follow() {
    const live = $("#live");
    for (;;) {
      try {
        const r = await fetch("/api/events", { headers: headers(), cache: "no-store" });
        if (r.status === 401) { askToken(); throw new Error("token needed"); }
        if (!r.ok || !r.body) throw new Error(r.status + " " + r.statusText);
        live.textContent = "live";
        live.className = "live ok";
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let cut;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let ev = "message", data = "";
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) ev = line.slice(6).trim();
              else if (line.startsWith("data:")) data += line.slice(5).replace(/^ /, "");
            }
            if (ev === "snapshot" && data) onSnapshot(JSON.parse(data));
          }
          if (buf.length > 8 << 20) throw new Error("event too large");
        }
        throw new Error("stream ended");
      } catch (e) {
        live.textContent = "disconnected (" + e.message + "), retrying…";
        live.className = "live bad";
        await new Promise((ok) => setTimeout(ok, 2000));
      }
    }
  }

  function remember(id, down, up) {
    let h = history.get(id);
    if (!h) { h = { down: [], up: [] }; history.set(id, h); }
    h.down.push(Number(down) || 0);
    h.up.push(Number(up) || 0);
    if (h.down.length > HISTORY) { h.down.shift(); h.up.shift(); }
    return h;
  }

  const SVG = "http://www.w3.org/2000/svg";

  function graph(id, h, down, up) {
    const w = 160, ht = 40;
    const max = Math.max(1, ...h.down, ...h.up);
    const line = (arr) => arr.map((v, i) =>
      ((w - (arr.length - 1 - i) * (w / (HISTORY - 1))).toFixed(1)) + "," +
      (ht - 2 - (v / max) * (ht - 4)).toFixed(1)).join(" ");
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "graph");
    svg.setAttribute("viewBox", "0 0 " + w + " " + ht);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "Bandwidth of the last minute; now " +
      bytes(down) + "/s down, " + bytes(up) + "/s up");
    const base = document.createElementNS(SVG, "line");
    base.setAttribute("class", "base");
    base.setAttribute("x1", 0); base.setAttribute("x2", w);
    base.setAttribute("y1", ht - 1); base.setAttribute("y2", ht - 1);
    svg.append(base);
    for (const [cls, arr] of [["l-down", h.down], ["l-up", h.up]]) {
      const p = document.createElementNS(SVG, "polyline");
      p.setAttribute("class", cls);
      p.setAttribute("points", line(arr));
      svg.append(p);
    }
    return el("div", { class: "bw", "data-identity": id }, svg,
      el("span", { class: "rate num" },
        el("span", { class: "down" }, "↓ " + bytes(down) + "/s"), " ",
        el("span", { class: "up" }, "↑ " + bytes(up) + "/s")));
  }

  // One row per item, kept across snapshots (so focus stays on a
  // button); cells are rebuilt.
  function syncRows(items, idOf, cellsOf) {
    const tbody = $("#items tbody");
    const labels = [...document.querySelectorAll("#items thead th")].map((th) => th.textContent.replace(/[↓↑/]/g, "").replace(/down, up/, "").trim());
    const seen = new Set();
    let prev = null;
    for (const it of items) {
      const id = idOf(it);
      seen.add(id);
      let tr = tbody.querySelector('tr[data-id="' + CSS.escape(id) + '"]');
      if (!tr) tr = el("tr", { "data-id": id });
      const cells = cellsOf(it);
      // Keep the actions cell if it holds the focus.
      const keepActions = tr.lastChild && tr.lastChild.contains(document.activeElement);
      const old = [...tr.children];
      cells.forEach((c, i) => {
        if (keepActions && i === cells.length - 1) return;
        const td = el("td", { "data-label": labels[i] || "" });
        if (c.cls) td.className = c.cls;
        td.append(...c.kids);
        if (old[i]) tr.replaceChild(td, old[i]); else tr.append(td);
      });
      if (prev ? prev.nextSibling !== tr : tbody.firstChild !== tr)
        tbody.insertBefore(tr, prev ? prev.nextSibling : tbody.firstChild);
      prev = tr;
    }
    for (const tr of [...tbody.children])
      if (!seen.has(tr.dataset.id)) tr.remove();
    for (const id of [...history.keys()]) if (!seen.has(id)) history.delete(id);
    $("#count").textContent = "(" + items.length + ")";
    $("#empty").hidden = items.length > 0;
  }

  function onSnapshot(s) {
    lastSnapshot = s;
    if (role === "hub") renderHub(s); else renderNode(s);
  }

  // ---------------------------------------------------------- hub

  function renderHub(s) {
    const items = s.proxies || [];
    syncRows(items, (p) => p.identity, (p) => {
      const bw = p.bandwidth || { down: 0, up: 0 };
      const h = remember(p.identity, bw.down, bw.up);
      const state = p.limited ? "limited" : p.bridges > 0 ? "live" : "offline";
      const stateText = p.limited ? "limit reached" : p.bridges > 0 ?
        "live, " + p.bridges + (p.bridges === 1 ? " bridge" : " bridges") : "offline";
      const t = p.traffic || { user: {}, bridge: {} };
      const lim = p.limits || {};
      const limText = (lim.bridges ? lim.bridges + " bridges" : "any bridges") +
        " · " + (lim.traffic ? bytes(lim.traffic) : "unlimited traffic");
      const remove = el("button", { type: "button", class: "danger",
        "aria-label": "Remove " + p.identity, onclick: () => removeProxy(p.identity) }, "Remove");
      const acts = [remove];
      if (s.rotate) acts.push(el("button", { type: "button", class: "secondary",
        "aria-label": "Rotate the credentials of " + p.identity,
        onclick: () => rotateProxy(p.identity) }, "Rotate"));
      return [
        { kids: [el("a", { href: p.url, class: "mono", rel: "noreferrer" }, p.identity),
                 el("div", { class: "hint mono", title: "user name" }, p.username || "")] },
        { cls: "state state-" + state, kids: [stateText] },
        { cls: "t-user", kids: [pair(t.user.down, t.user.up)] },
        { cls: "t-bridge", kids: [pair(t.bridge.down, t.bridge.up)] },
        { kids: [graph(p.identity, h, bw.down, bw.up)] },
        { kids: [el("span", { title: p.last_seen ? new Date(p.last_seen * 1000).toLocaleString() : "" },
                    ago(p.last_seen ? p.last_seen * 1000 : 0))] },
        { kids: [limText] },
        { cls: "actions", kids: acts },
      ];
    });
  }

  async function removeProxy(id) {
    if (!confirm("Remove " + id + "? Its bridges are disconnected.")) return;
    try { await api("DELETE", "/api/proxy/" + id + "/"); say("Removed " + id + ".", true); }
    catch (e) { say("Remove failed: " + e.message); }
  }

  async function rotateProxy(id) {
    if (!confirm("Rotate the credentials of " + id + "?")) return;
    try { showSecret(await api("POST", "/api/proxy/" + id + "/rotate/", {}), "New password of " + id); say("Rotated " + id + ".", true); }
    catch (e) { say("Rotate failed: " + e.message); }
  }

  function showSecret(a, title) {
    $("#secret-h").textContent = title || "New allocation";
    const dl = $("#secret-list");
    dl.replaceChildren();
    for (const k of ["identity", "username", "password", "url", "old_password_until"]) {
      if (a[k] === undefined) continue;
      const v = k === "old_password_until" ? new Date(a[k] * 1000).toLocaleString() : a[k];
      dl.append(el("dt", { text: k === "old_password_until" ? "old password valid until" : k }),
                el("dd", { text: v }));
    }
    $("#secret").hidden = false;
    $("#secret-close").focus();
  }

  function hubForms() {
    $("#create-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const limits = {};
      const b = $("#create-bridges").value, t = $("#create-traffic").value;
      if (b !== "") limits.bridges = Number(b);
      if (t !== "") limits.traffic = Number(t);
      try {
        const a = await api("POST", "/api/proxy/", Object.keys(limits).length ? { limits } : {});
        say("Created " + a.identity + ".", true);
        showSecret(a);
      } catch (e) { say("Create failed: " + e.message); }
    });
    $("#prune-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const age = $("#prune-age").value.trim();
      try {
        const r = await api("DELETE", "/api/proxy/prune/?older_than=" + encodeURIComponent(age));
        say("Pruned " + r.removed + (r.removed === 1 ? " allocation." : " allocations."), true);
      } catch (e) { say("Prune failed: " + e.message); }
    });
    $("#secret-close").addEventListener("click", () => {
      $("#secret").hidden = true;
      $("#secret-list").replaceChildren();
    });
  }

  // ---------------------------------------------------------- node

  let inspected = "";   // identity shown in the inspector
  let inspectedLast = -1; // its newest exchange id, as last listed
  let selected = null;  // exchange id shown in the detail pane

  function renderNode(s) {
    const items = s.bridges || [];
    syncRows(items, (b) => b.identity || ("upstream " + b.upstream + " " + b.hub), (b) => {
      const bw = b.bandwidth || { down: 0, up: 0 };
      const id = b.identity || ("upstream " + b.upstream + " " + b.hub);
      const h = remember(id, bw.down, bw.up);
      const t = b.traffic || { gateway: {}, upstream: {} };
      const acts = [];
      if (b.identity) {
        if (b.state === "disconnected")
          acts.push(el("button", { type: "button", "aria-label": "Connect " + b.identity,
            onclick: () => bridgeAction(b.identity, "connect") }, "Connect"));
        else
          acts.push(el("button", { type: "button", class: "secondary", "aria-label": "Disconnect " + b.identity,
            onclick: () => bridgeAction(b.identity, "disconnect") }, "Disconnect"));
        if (s.inspect)
          acts.push(el("button", { type: "button", class: "secondary", "aria-label": "Inspect the requests of " + b.identity,
            onclick: () => inspect(b.identity, true) }, "Inspect"));
        acts.push(el("button", { type: "button", class: "danger", "aria-label": "Remove " + b.identity,
          onclick: () => removeBridge(b.identity) }, "Remove"));
      }
      return [
        { kids: [b.identity ? el("a", { href: b.url, class: "mono", rel: "noreferrer" }, b.identity)
                            : el("span", { class: "hint" }, "(no identity yet)")] },
        { cls: "state state-" + b.state, kids: [b.state, b.error ? el("div", { class: "hint" }, b.error) : null] },
        { cls: "t-gateway", kids: [pair(t.gateway.down, t.gateway.up)] },
        { cls: "t-upstream", kids: [pair(t.upstream.down, t.upstream.up)] },
        { kids: [graph(id, h, bw.down, bw.up)] },
        { kids: [el("span", { title: b.last_seen ? new Date(b.last_seen).toLocaleString() : "" }, ago(b.last_seen))] },
        { kids: [el("div", { class: "mono" }, b.upstream), el("div", { class: "hint mono" }, "via " + b.hub)] },
        { cls: "actions", kids: acts },
      ];
    });
    // The inspector follows the snapshot: its bridge list, and a refresh
    // when the bridge shown has new exchanges.
    $("#inspector-off").hidden = !!s.inspect;
    $("#inspector-on").hidden = !s.inspect;
    if (!s.inspect) return;
    const sel = $("#inspect-bridge");
    const ids = items.filter((b) => b.identity).map((b) => b.identity);
    const have = [...sel.options].map((o) => o.value);
    if (ids.join(" ") !== have.join(" ")) {
      sel.replaceChildren(...ids.map((id) => el("option", { value: id }, id)));
      if (ids.includes(inspected)) sel.value = inspected;
    }
    if (!ids.includes(inspected)) {
      inspected = ids[0] || "";
      inspectedLast = -1;
      if (inspected) sel.value = inspected;
    }
    const b = items.find((x) => x.identity === inspected);
    const last = b && b.inspector ? b.inspector.last : -1;
    if (inspected && last !== inspectedLast) {
      inspectedLast = last;
      loadRequests();
    }
  }

  async function bridgeAction(id, what) {
    try { await api("POST", "/api/bridge/" + id + "/" + what + "/"); say(what === "connect" ? "Connecting " + id + "." : "Disconnected " + id + ".", true); }
    catch (e) { say(what + " failed: " + e.message); }
  }

  async function removeBridge(id) {
    if (!confirm("Remove the bridge " + id + "?")) return;
    try { await api("DELETE", "/api/bridge/" + id + "/"); say("Removed " + id + ".", true); }
    catch (e) { say("Remove failed: " + e.message); }
  }

  function inspect(id, focus) {
    inspected = id;
    inspectedLast = -1;
    selected = null;
    $("#inspect-bridge").value = id;
    $("#detail").hidden = true;
    loadRequests();
    if (focus) $("#inspect-bridge").focus();
  }

  async function loadRequests() {
    const id = inspected;
    if (!id) return;
    let r;
    try { r = await api("GET", "/api/bridge/" + id + "/requests/"); }
    catch (e) { say("Inspector: " + e.message); return; }
    if (id !== inspected) return;
    const tbody = $("#requests tbody");
    const rows = (r.requests || []).slice().reverse();
    tbody.replaceChildren(...rows.map((x) => {
      const tr = el("tr", { "data-exchange": x.id, class: x.id === selected ? "selected" : null });
      const st = x.status ? String(x.status) : x.state;
      tr.append(
        el("td", { class: "num" }, new Date(x.started_at).toLocaleTimeString()),
        el("td", {}, el("button", { type: "button", class: "link", "aria-label": "Show " + x.method + " " + x.path + (x.replay ? " (replay)" : ""),
          onclick: () => showExchange(x.id) }, x.method + " " + x.path), x.replay ? el("span", { class: "hint" }, " replay") : null),
        el("td", { class: "status-" + String(x.status || 0)[0] }, st),
        el("td", { class: "num" }, x.duration_ms >= 0 ? x.duration_ms + " ms" : "…"),
        el("td", { class: "num" }, bytes(x.response_bytes || 0)));
      return tr;
    }));
    $("#requests-empty").hidden = rows.length > 0;
  }

  function bodyText(part) {
    if (!part || !part.body_length) return "(empty)";
    let t = part.body_encoding === "base64" ? "(binary, base64) " + part.body : part.body;
    if (part.body_truncated) t += "\n… (" + part.body_length + " bytes in all; the first " + part.body_kept + " kept)";
    return t;
  }

  async function showExchange(n) {
    let x;
    try { x = await api("GET", "/api/bridge/" + inspected + "/requests/" + n + "/"); }
    catch (e) { say("Inspector: " + e.message); return; }
    selected = n;
    for (const tr of document.querySelectorAll("#requests tbody tr"))
      tr.classList.toggle("selected", Number(tr.dataset.exchange) === n);
    $("#detail-h").textContent = x.method + " " + x.path + (x.status ? " → " + x.status : "");
    $("#req-head").textContent = x.request.head;
    $("#req-body").textContent = bodyText(x.request);
    $("#resp-head").textContent = x.response ? x.response.head : "(no response yet)";
    $("#resp-body").textContent = x.response ? bodyText(x.response) : "";
    $("#replay-result").textContent = "";
    $("#replay").disabled = !x.replayable;
    $("#replay").title = x.replayable ? "" : (x.not_replayable || "");
    const d = $("#detail");
    d.hidden = false;
    d.dataset.exchange = n;
    d.focus();
  }

  async function replay() {
    const n = Number($("#detail").dataset.exchange);
    const out = $("#replay-result");
    out.textContent = "replaying…";
    $("#replay").disabled = true;
    try {
      const r = await api("POST", "/api/bridge/" + inspected + "/requests/" + n + "/replay/");
      out.textContent = "replayed: " + (r.status ? r.status : r.state) + " (#" + r.id + ")";
      out.dataset.status = r.status || 0;
      loadRequests();
    } catch (e) {
      out.textContent = "replay failed: " + e.message;
    } finally {
      $("#replay").disabled = false;
    }
  }

  function nodeForms() {
    $("#create-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = { upstream: $("#create-upstream").value.trim() };
      const hub = $("#create-hub").value.trim();
      if (hub) body.hub = hub;
      try {
        const b = await api("POST", "/api/bridge/", body);
        say("Added a bridge to " + b.upstream + ".", true);
      } catch (e) { say("Add failed: " + e.message); }
    });
    $("#prune-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const r = await api("DELETE", "/api/bridge/prune/");
        say("Pruned " + r.removed + (r.removed === 1 ? " bridge." : " bridges."), true);
      } catch (e) { say("Prune failed: " + e.message); }
    });
    $("#inspect-bridge").addEventListener("change", (ev) => inspect(ev.target.value, false));
    $("#replay").addEventListener("click", replay);
  }

  // ---------------------------------------------------------- start

  $("#token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("#token").value;
    sessionStorage.setItem("sluice-token", token);
    $("#token-form").hidden = true;
  });
  if (role === "hub") hubForms(); else nodeForms();
  follow();
})();
