// stolentee ops dashboard: plain JS, no build step, no library; reads GET /v1/ops/summary.
// Charts are inline SVG built with DOM calls (never innerHTML: details carry server text).
"use strict";

(function () {
  const KEY_STORAGE = "stolentee.apiKey"; // shared with the upload page
  const REFRESH_MS = 30000;
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  let timer = null;
  let started = 0; // the first render is timed from the navigation's start (performance.now()'s origin)

  function load(name) {
    try { return window.localStorage.getItem(name) || ""; } catch (_err) { return ""; }
  }
  function save(name, value) {
    try {
      if (value) window.localStorage.setItem(name, value);
      else window.localStorage.removeItem(name);
    } catch (_err) { /* not persisted: fine */ }
  }

  // ---- formatting ----
  const usd = (v) => v === null || v === undefined ? "–" :
    "$" + Number(v).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const num = (v) => v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US");
  const ms = (v) => v === null || v === undefined ? "–" : Math.round(v) + " ms";
  const secs = (v) => v === null || v === undefined ? "–" : Number(v).toFixed(1) + " s";
  const pct = (v) => v === null || v === undefined ? "–" : (v * 100).toFixed(1) + " %";

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function tiles(container, items) {
    container.replaceChildren();
    for (const [label, value, testid] of items) {
      const box = el("div", { "data-testid": testid });
      box.append(el("dt", {}, label), el("dd", {}, value));
      container.append(box);
    }
  }

  // ---- charts ----
  // Vertical bars, one group per label; series stacked. Each bar carries data-value.
  function barChart(container, { labels, series, format, height = 180, tick = 5 }) {
    const width = 720, left = 56, bottom = 22, top = 8;
    const plotH = height - bottom - top, plotW = width - left - 8;
    const totals = labels.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
    const max = Math.max(...totals, 0);
    const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
    svg.append(svgEl("line", { class: "axis", x1: left, y1: top + plotH, x2: width - 8, y2: top + plotH }));
    if (max === 0) {
      svg.append(svgEl("text", { class: "empty", x: left + 8, y: top + plotH / 2 }, "nothing yet"));
    }
    const scale = max > 0 ? plotH / max : 0;
    for (let t = 0; t <= 2 && max > 0; t++) {
      const value = (max * t) / 2, y = top + plotH - value * scale;
      svg.append(svgEl("text", { x: 2, y: y + 4 }, format(value)));
    }
    const slot = plotW / Math.max(labels.length, 1), barW = Math.max(2, slot * 0.7);
    labels.forEach((label, i) => {
      let y = top + plotH;
      const x = left + i * slot + (slot - barW) / 2;
      series.forEach((s) => {
        const value = s.values[i] || 0;
        const h = value * scale;
        y -= h;
        const bar = svgEl("rect", {
          class: `bar ${s.cls}`, x: x.toFixed(1), y: y.toFixed(1), width: barW.toFixed(1),
          height: Math.max(h, 0).toFixed(1), "data-label": label, "data-series": s.name,
          "data-value": value,
        });
        bar.append(svgEl("title", {}, `${label} · ${s.name}: ${format(value)}`));
        svg.append(bar);
      });
      if (i % tick === 0) {
        svg.append(svgEl("text", { x: x, y: height - 6 }, label));
      }
    });
    container.replaceChildren(svg);
  }

  // Horizontal bars, one per row, with an optional dashed target line.
  function hbarChart(container, { rows, format, target }) {
    const width = 720, left = 250, rowH = 20, top = 6;
    const height = top * 2 + Math.max(rows.length, 1) * rowH + 14;
    const plotW = width - left - 70;
    const max = Math.max(...rows.map((r) => r.value || 0), target || 0, 0);
    const scale = max > 0 ? plotW / max : 0;
    const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
    if (rows.length === 0) {
      svg.append(svgEl("text", { class: "empty", x: 8, y: 24 }, "no requests in the window yet"));
    }
    rows.forEach((row, i) => {
      const y = top + i * rowH;
      svg.append(svgEl("text", { x: 4, y: y + 14 }, row.label));
      const w = (row.value || 0) * scale;
      const bar = svgEl("rect", {
        class: "bar s0", x: left, y: y + 3, width: Math.max(w, 1).toFixed(1), height: rowH - 6,
        "data-label": row.label, "data-value": row.value,
      });
      bar.append(svgEl("title", {}, `${row.label}: ${format(row.value)}`));
      svg.append(bar, svgEl("text", { x: left + w + 6, y: y + 14 }, format(row.value)));
    });
    if (target && max > 0) {
      const x = left + target * scale;
      svg.append(svgEl("line", { class: "target", x1: x, y1: 0, x2: x, y2: height - 12 }));
    }
    container.replaceChildren(svg);
  }

  // ---- sections ----
  function renderHealth(health) {
    const status = $("health-status");
    status.textContent = health.status;
    status.className = `badge ${health.status}`;
    const list = $("components");
    list.replaceChildren();
    for (const c of health.components) {
      const item = el("li", { class: c.status, "data-component": c.name, "data-status": c.status });
      item.append(el("span", { class: "name" }, c.name), el("span", {}, c.detail));
      list.append(item);
    }
    const notices = $("notices");
    notices.replaceChildren();
    if (!health.notices.length) {
      notices.append(el("li", {}, health.noticesEnabled ? "none yet" :
        "notices are off (STOLENTEE_ALERT_WEBHOOK_URL)"));
    }
    for (const n of health.notices) {
      const sent = n.sentAt ? "sent" : n.givenUp ? "given up" : "pending";
      notices.append(el("li", {}, `${n.createdAt} ${n.component}: ${n.previous || "–"} → ${n.status} (${sent})`));
    }
  }

  function renderQueue(queue) {
    tiles($("queue"), [
      ["Queued", num(queue.depth), "queue-depth"],
      ["In flight", num(queue.inFlight), "queue-in-flight"],
      ["Oldest waiting", secs(queue.oldestQueuedAgeS), "queue-oldest"],
      ["Job time p50", secs(queue.processingP50S), "queue-p50"],
      ["Job time p95", secs(queue.processingP95S), "queue-p95"],
      ["Failed", num(queue.failedTotal), "queue-failed"],
    ]);
  }

  function renderProviders(providers, removals) {
    const body = $("providers").tBodies[0];
    body.replaceChildren();
    for (const p of providers.providers) {
      const probe = p.lastProbe ? `${p.lastProbe.ok ? "ok" : "failed"}: ${p.lastProbe.detail}` : "–";
      const row = el("tr", { "data-provider": p.name });
      row.append(
        el("td", {}, p.name), el("td", {}, p.kind), el("td", {}, p.state), el("td", {}, probe),
        el("td", { class: "num", "data-testid": `provider-requests-${p.name}` }, num(p.requests)),
        el("td", { class: "num" }, num(p.failures)), el("td", { class: "num" }, ms(p.latencyP95Ms)),
        el("td", {}, p.model || "–"),
      );
      body.append(row);
    }
    const byDay = Object.fromEntries(providers.days.map((d) => [d.day, d.providers]));
    const labels = removals.days.map((d) => d.day.slice(5));
    const sum = (day, key) => Object.values(byDay[day] || {}).reduce((s, p) => s + p[key], 0);
    barChart($("chart-provider-days"), {
      labels,
      series: [
        { name: "requests", cls: "s0", values: removals.days.map((d) => sum(d.day, "requests") - sum(d.day, "failures")) },
        { name: "failures", cls: "failures", values: removals.days.map((d) => sum(d.day, "failures")) },
      ],
      format: (v) => num(Math.round(v)), height: 140,
    });
  }

  function renderLatency(latency) {
    hbarChart($("chart-latency"), {
      rows: latency.routes.slice(0, 14).map((r) => ({ label: `${r.method} ${r.route}`, value: r.p95Ms })),
      format: ms, target: 500,
    });
  }

  function renderRemovals(removals) {
    $("removals-total").textContent = `${num(removals.total)} in 30 days`;
    barChart($("chart-removals"), {
      labels: removals.days.map((d) => d.day.slice(5)),
      series: [
        { name: "self-hosted", cls: "self", values: removals.days.map((d) => d.selfHosted) },
        { name: "Remove.bg", cls: "removebg", values: removals.days.map((d) => d.removebg) },
      ],
      format: (v) => num(Math.round(v)),
    });
  }

  function renderSavings(savings) {
    tiles($("savings"), [
      ["Saved, last 30 days", usd(savings.savedUsd), "savings-saved"],
      ["Estimated monthly savings", usd(savings.estimatedMonthlySavingsUsd), "savings-monthly"],
      ["Monthly cost now", usd(savings.actualMonthlyUsd), "savings-actual"],
      ["All through Remove.bg", usd(savings.counterfactualMonthlyUsd), "savings-counterfactual"],
      ["Self-hosted share", pct(savings.selfHostedShare), "savings-share"],
    ]);
    barChart($("chart-savings"), {
      labels: savings.days.map((d) => d.day.slice(5)),
      series: [{ name: "saved", cls: "saved", values: savings.days.map((d) => d.savedUsd) }],
      format: usd, height: 150,
    });
  }

  function renderCosts(costs) {
    const labels = costs.users.map((u) => `${num(u)} users`);
    const series = costs.scenarios.map((s, i) => ({
      name: s.label, cls: `s${i % 2}`, values: s.points.map((p) => p.monthlyUsd),
    }));
    // Grouped, not stacked: each (users, scenario) pair gets a slot of its own, and each
    // scenario's series has a value only in its own slots.
    const groupedLabels = [], groupedSeries = series.map((s) => ({ ...s, values: [] }));
    labels.forEach((label, i) => {
      series.forEach((s, j) => {
        groupedLabels.push(j === 0 ? label : "");
        groupedSeries.forEach((g, k) => g.values.push(k === j ? s.values[i] : 0));
      });
    });
    barChart($("chart-costs"), { labels: groupedLabels, series: groupedSeries, format: usd, tick: 1 });
    $("costs-legend").replaceChildren(...series.flatMap((s) =>
      [el("span", { class: `swatch ${s.cls === "s0" ? "self" : "removebg"}` }), document.createTextNode(s.name)]));
    const table = $("costs");
    const head = el("tr");
    head.append(el("th", {}, "Scenario"), ...costs.users.map((u) => el("th", { class: "num" }, `${num(u)} users`)));
    table.tHead.replaceChildren(head);
    table.tBodies[0].replaceChildren(...costs.scenarios.map((s) => {
      const row = el("tr", { "data-scenario": s.name });
      row.append(el("td", {}, s.label), ...s.points.map((p) =>
        el("td", { class: "num", "data-users": p.users }, `${usd(p.monthlyUsd)} (${usd(p.perUserUsd)}/user)`)));
      return row;
    }));
  }

  // ---- loading ----
  function showError(text) {
    const error = $("error");
    error.textContent = text;
    error.hidden = !text;
  }

  async function refresh() {
    const key = $("api-key").value.trim();
    const headers = key ? { "X-Api-Key": key } : {};
    let response;
    try {
      response = await fetch("/v1/ops/summary", { headers, cache: "no-store" });
    } catch (_err) {
      showError("The server cannot be reached.");
      document.body.dataset.state = "error";
      return;
    }
    if (!response.ok) {
      let detail = `HTTP ${response.status}`;
      try { detail = (await response.json()).errors[0].detail || detail; } catch (_err) { /* keep */ }
      showError(response.status === 401 || response.status === 403 ?
        `Not allowed: ${detail}` : `The summary failed: ${detail}`);
      document.body.dataset.state = "error";
      return;
    }
    const summary = await response.json();
    showError("");
    renderHealth(summary.health);
    renderQueue(summary.queue);
    renderProviders(summary.providers, summary.removals);
    renderLatency(summary.latency);
    renderRemovals(summary.removals);
    renderSavings(summary.savings);
    renderCosts(summary.costs);
    $("dashboard").hidden = false;
    $("updated").textContent = `Updated ${summary.generatedAt}.`;
    document.body.dataset.renderMs = String(Math.round(performance.now() - started));
    document.body.dataset.state = "ready";
  }

  function schedule() {
    if (timer) clearInterval(timer);
    timer = $("auto-refresh").checked ? setInterval(refresh, REFRESH_MS) : null;
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    save(KEY_STORAGE, $("api-key").value.trim());
    started = performance.now();
    refresh();
    schedule();
  });
  $("auto-refresh").addEventListener("change", schedule);
  $("api-key").value = load(KEY_STORAGE);
  refresh();
  schedule();
})();
