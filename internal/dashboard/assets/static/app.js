// Shoal dashboard: keeps a server-rendered page live. The server sends
// re-rendered HTML fragments and new events over Server-Sent Events; this
// file only puts them in place. No framework, no third-party code.
"use strict";

(function () {
  const body = document.body;

  function setStatus(state, text) {
    const el = document.getElementById("live-status");
    if (!el) return;
    el.dataset.status = state;
    el.lastElementChild.textContent = text;
  }

  function liveStream() {
    const q = body.dataset.live;
    if (!q || !window.EventSource) return;
    const es = new EventSource("/ui/events?" + q);
    es.onopen = () => setStatus("live", "Live");
    es.onerror = () => setStatus("offline", "Reconnecting…");
    es.addEventListener("fragment", (ev) => {
      const msg = JSON.parse(ev.data);
      const el = document.getElementById(msg.id);
      if (el) el.innerHTML = msg.html; // rendered and escaped by html/template
    });
    es.addEventListener("event", (ev) => {
      const msg = JSON.parse(ev.data);
      for (const list of document.querySelectorAll("[data-events]")) {
        if (list.querySelector('[data-seq="' + msg.seq + '"]')) continue;
        const empty = list.querySelector(".empty");
        if (empty) empty.remove();
        const tpl = document.createElement("template");
        tpl.innerHTML = msg.html.trim();
        const row = tpl.content.firstElementChild;
        if (!row) continue;
        row.classList.add("new");
        list.prepend(row);
        const maxRows = parseInt(list.dataset.max || "200", 10);
        while (list.children.length > maxRows) list.lastElementChild.remove();
      }
    });
  }

  // Charts are SVG images drawn by the server; reload them in place every
  // few seconds without flicker (swap once the new one has loaded).
  function refreshCharts() {
    for (const img of document.querySelectorAll("img[data-chart]")) {
      const url = new URL(img.src, location.href);
      url.searchParams.set("t", Date.now().toString());
      const next = new Image();
      next.onload = () => { img.src = next.src; };
      next.src = url.toString();
    }
  }

  function logTail() {
    const pre = document.querySelector("[data-log-src]");
    if (!pre || !window.EventSource) return;
    const state = document.querySelector("[data-log-state]");
    const es = new EventSource(pre.dataset.logSrc);
    const maxLines = 2000;
    let lines = 0;
    es.onopen = () => { if (state) state.textContent = "live"; };
    es.onerror = () => { if (state) state.textContent = "reconnecting…"; };
    es.addEventListener("open", () => { pre.textContent = ""; lines = 0; });
    es.addEventListener("log", (ev) => {
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.appendChild(document.createTextNode(ev.data + "\n"));
      lines++;
      while (lines > maxLines && pre.firstChild) { pre.firstChild.remove(); lines--; }
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    });
    es.addEventListener("log-error", (ev) => {
      if (state) state.textContent = ev.data;
      es.close();
    });
  }

  function autoSubmit() {
    for (const form of document.querySelectorAll("form[data-autosubmit]")) {
      for (const sel of form.querySelectorAll("select")) {
        sel.addEventListener("change", () => form.requestSubmit());
      }
    }
  }

  liveStream();
  logTail();
  autoSubmit();
  if (document.querySelector("img[data-chart]")) setInterval(refreshCharts, 5000);
})();
