// The Beamtime page: rows from the monitor, kept up to date by a long poll (no reload).
// Every value from the server goes into the page as text (never as HTML).
(function () {
  "use strict";
  const body = document.body;
  const prefix = body.dataset.prefix;
  const hub = body.dataset.hub;
  const rows = new Map();          // path -> row
  let seq = 0;
  let firstLoad = true;
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function fileUrl(row, name) {
    return `${prefix}api/file?path=${encodeURIComponent(row.path)}&name=${encodeURIComponent(name)}` +
      `&v=${row.seq}`;
  }

  function when(row) {
    const t = row.finished_at || row.completed_at || row.first_seen;
    if (!t) return "";
    const d = new Date(t * 1000);
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleString();
  }

  function badge(row) {
    if (row.state === "done") return el("span", { class: `bt-badge ${row.verdict}` }, (row.verdict || "?").toUpperCase());
    if (row.state === "failed") return el("span", { class: "bt-badge failed" }, "REFUSED");
    return el("span", { class: "bt-badge busy" }, row.state.toUpperCase());
  }

  function group(row) {
    if (row.state === "done") return row.verdict;
    if (row.state === "failed") return "failed";
    return "busy";
  }

  function render(row) {
    const g = group(row);
    const tr = el("tr", { class: `bt-row-${g}`, "data-path": row.path, "data-state": row.state,
                          "data-verdict": row.verdict || "", "data-kind": row.kind || "",
                          "data-folder": row.folder || "" });
    const shape = row.frame_shape ? `${row.frames} frame${row.frames === 1 ? "" : "s"} of ${row.frame_shape.join("×")}` : "";
    const sub = [row.kind ? row.kind.toUpperCase() : "", shape, row.folder].filter(Boolean).join(" · ");
    let meaning;
    if (row.state === "done") {
      meaning = el("div", null,
        el("div", { class: "bt-conclusion" }, row.conclusion || row.summary || ""),
        row.action ? el("div", { class: "bt-action" }, row.action) : null);
    } else if (row.state === "failed") {
      meaning = el("div", null, el("div", { class: "bt-conclusion" }, "Could not be analysed"),
        el("div", { class: "bt-action" }, row.error || ""));
    } else {
      meaning = el("div", { class: "bt-sub" }, row.note || (row.state === "queued" ? "waiting for a worker" : "analysing"));
    }
    const files = row.files || [];
    const thumb = files.includes("thumb.png") ? el("img", { class: "bt-thumb", src: fileUrl(row, "thumb.png"), alt: "mean image" }) : "";
    const small = files.includes("g2_small.png") ? "g2_small.png" : files.includes("preview_small.png") ? "preview_small.png" : "";
    const g2 = small ? el("img", { class: "bt-g2", src: fileUrl(row, small), alt: small.startsWith("g2") ? "g2" : "reconstruction" }) : "";
    const links = el("div", { class: "bt-files" });
    for (const [name, label] of [["result.h5", "HDF5"], ["tables.zip", "tables"], ["summary.json", "summary"]]) {
      if (files.includes(name)) links.append(el("a", { href: fileUrl(row, name) }, label));
    }
    let open = "";
    if (row.state === "done" && row.dashboard && row.result) {
      const target = `voila/render/dashboards/${row.dashboard}?result=${encodeURIComponent(row.result)}`;
      open = el("a", { class: "btn btn-primary btn-sm bt-open", href: `${hub}hub/user-redirect/${target}`,
                       target: "_blank", rel: "noopener" }, "Open");
    }
    tr.append(
      el("td", null, when(row)),
      el("td", null, thumb),
      el("td", null, el("div", { class: "bt-name" }, row.name), el("div", { class: "bt-sub" }, sub)),
      el("td", null, badge(row)),
      el("td", null, meaning),
      el("td", null, g2),
      el("td", null, open, links));
    return tr;
  }

  function sortKey(row) {
    return row.finished_at || row.completed_at || row.first_seen || 0;
  }

  function visible(row) {
    if (row.state === "ignored") return false;
    const f = $("bt-filter-folder").value, v = $("bt-filter-verdict").value, k = $("bt-filter-kind").value;
    if (f && row.folder !== f) return false;
    if (k && row.kind !== k) return false;
    if (v && group(row) !== v) return false;
    return true;
  }

  function redraw(fresh) {
    const tbody = $("bt-rows");
    const list = [...rows.values()].filter(visible).sort((a, b) => sortKey(b) - sortKey(a));
    tbody.replaceChildren(...list.map((row) => {
      const tr = render(row);
      if (fresh.has(row.path)) tr.classList.add("bt-new");
      return tr;
    }));
    const shown = [...rows.values()].filter((r) => r.state !== "ignored").length;
    const noun = (n) => `${n} dataset${n === 1 ? "" : "s"}`;
    $("bt-count").textContent = list.length === shown ? noun(shown) : `${list.length} of ${noun(shown)}`;
    $("bt-empty").classList.toggle("d-none", shown > 0);
    const folders = new Set([...rows.values()].map((r) => r.folder).filter(Boolean));
    const select = $("bt-filter-folder");
    const have = new Set([...select.options].map((o) => o.value));
    for (const f of folders) if (!have.has(f)) select.append(el("option", { value: f }, f));
  }

  function showStatus(status) {
    const error = status.error || "";
    $("bt-error").textContent = error;
    $("bt-error").classList.toggle("d-none", !error);
    $("bt-demo").classList.toggle("d-none", !status.demo);
    if (status.starting) {
      $("bt-folders").textContent = "starting the monitor…";
      return;
    }
    if (!status.folders) return;
    $("bt-folders").textContent = status.folders.map((f) => `${f.path} (${f.mode})`).join(", ");
    const c = status.counts || {};
    $("bt-queue").textContent = `${(c.waiting || 0)} being written, ${(c.queued || 0)} waiting for a worker, ` +
      `${(c.running || 0)} running, ${(c.done || 0)} analysed, ${(c.failed || 0)} refused`;
    const w = status.workers || [];
    const busy = w.filter((x) => x.busy > 0).length;
    $("bt-workers").textContent = `${status.engine || ""}: ${w.length} worker${w.length === 1 ? "" : "s"}, ${busy} busy`;
    const problems = status.template_problems || [];
    $("bt-template-problems").textContent = problems.length ? `Template files that cannot be used: ${problems.join("; ")}` : "";
    $("bt-template-problems").classList.toggle("d-none", !problems.length);
  }

  function live(ok, text) {
    const e = $("bt-live");
    e.className = "bt-live " + (ok ? "ok" : "lost");
    e.textContent = text;
  }

  async function poll() {
    let failures = 0;
    for (;;) {
      try {
        const wait = firstLoad ? 0 : 20;
        const r = await fetch(`${prefix}api/datasets?since=${seq}&wait=${wait}`,
                              { credentials: "same-origin",
                                headers: { Accept: "application/json", "X-XSRFToken": body.dataset.xsrf } });
        if (r.status === 403 || r.status === 401 || r.redirected) {
          live(false, "logged out: reloading…");
          setTimeout(() => window.location.reload(), 1500);
          return;
        }
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        const data = await r.json();
        const fresh = new Set();
        for (const row of data.rows) {
          if (!firstLoad && (!rows.has(row.path) || rows.get(row.path).state !== row.state)) fresh.add(row.path);
          rows.set(row.path, row);
        }
        seq = Math.max(seq, data.seq);
        if (data.rows.length || firstLoad) redraw(fresh);
        showStatus(data.status);
        live(true, `live · updated ${new Date().toLocaleTimeString()}`);
        firstLoad = false;
        failures = 0;
      } catch (err) {
        failures += 1;
        live(false, `reconnecting… (${err.message || err})`);
        await new Promise((res) => setTimeout(res, Math.min(5000, 500 * failures)));
      }
    }
  }

  for (const id of ["bt-filter-folder", "bt-filter-verdict", "bt-filter-kind"]) {
    $(id).addEventListener("change", () => redraw(new Set()));
  }
  poll();
})();
