// The Tidal dashboard: a hash-routed page over the JSON routes under ./api/.
// Everything shown is built with DOM calls and textContent (never innerHTML),
// so state values and tracebacks cannot inject markup.
"use strict";

(() => {
  const API = new URL("api/", document.baseURI).href;
  const KEY = "tidal.dashboard.key";
  const SVG = "http://www.w3.org/2000/svg";
  const main = document.getElementById("main");
  let session = null;

  // -- helpers ----------------------------------------------------------------

  function build(make, tag, attrs, kids) {
    const el = make(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  const h = (tag, attrs, ...kids) => build((t) => document.createElement(t), tag, attrs, kids);
  const s = (tag, attrs, ...kids) => build((t) => document.createElementNS(SVG, t), tag, attrs, kids);
  const enc = encodeURIComponent;

  const ms = (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(2) + " ms" : Math.round(v) + " ms");
  const seconds = (v) => (v === null || v === undefined ? "–" : v < 60 ? v.toFixed(1) + " s" : Math.round(v / 60) + " min");
  function bytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1024 / 1024).toFixed(1) + " MiB";
  }
  function when(v) {
    if (v === null || v === undefined) return "–";
    const d = typeof v === "number" ? new Date(v * 1000) : new Date(v);
    return d.toLocaleString();
  }
  const usd = (v) => (v === null || v === undefined ? "–" : v === 0 ? "$0" : v < 0.01 ? "$" + v.toFixed(4) : "$" + v.toFixed(2));
  const pct = (v) => (v === null || v === undefined ? "–" : Math.round(v * 100) + "%");
  const count = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString());
  const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

  function table(headers, rows, attrs) {
    const head = h("tr", null, headers.map((x) => h("th", { class: x.endsWith("#") ? "num" : null }, x.replace(/#$/, ""))));
    return h("table", attrs, h("thead", null, head), h("tbody", null, rows));
  }
  const num = (v, attrs) => h("td", { class: "num", ...attrs }, v);
  const empty = (cols, text) => h("tr", null, h("td", { colspan: cols, class: "muted" }, text));

  function notice(text, isError) {
    const box = document.getElementById("notice");
    box.textContent = text;
    box.className = isError ? "notice error" : "notice";
    box.hidden = !text;
  }

  async function call(path, options) {
    const headers = { Accept: "application/json" };
    const key = sessionStorage.getItem(KEY);
    if (key) headers.Authorization = "Bearer " + key;
    const init = { method: (options && options.method) || "GET", headers };
    if (options && options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    const answer = await fetch(API + path, init);
    let data = null;
    try {
      data = await answer.json();
    } catch (_) {
      data = null;
    }
    if (!answer.ok) {
      const error = new Error((data && data.message) || answer.status + " " + answer.statusText);
      error.status = answer.status;
      throw error;
    }
    return data;
  }

  // -- session ------------------------------------------------------------------

  async function loadSession() {
    session = await call("session");
    document.getElementById("app-name").textContent = session.app;
    const who = document.getElementById("who");
    who.replaceChildren();
    document.getElementById("nav").hidden = !session.authenticated;
    if (session.auth_required && session.authenticated) {
      const p = session.principal;
      who.append(`${p.kind} ${p.name} · ${p.write ? "read and write" : "read-only"}`);
      who.append(h("button", { id: "sign-out", onclick: signOut }, "Sign out"));
    }
  }

  function signOut() {
    sessionStorage.removeItem(KEY);
    notice("");
    start();
  }

  function login(message) {
    document.getElementById("nav").hidden = true;
    const input = h("input", { id: "api-key", type: "password", autocomplete: "off", placeholder: "tidal_… or a JWT" });
    const form = h(
      "form",
      { id: "login", class: "card" },
      h("h1", null, "Sign in"),
      h("p", null, "This server requires an API key (", h("code", null, "tidal keys create"), ") or a JWT."),
      h("label", { for: "api-key" }, "API key or token"),
      input,
      message ? h("p", { class: "bad", id: "login-error" }, message) : null,
      h("button", { class: "primary", type: "submit" }, "Sign in"),
      h("p", { class: "muted" }, "The key stays in this tab (sessionStorage) and is sent as Authorization: Bearer."),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY, input.value.trim());
      start();
    });
    main.replaceChildren(form);
    input.focus();
  }

  async function start() {
    try {
      await loadSession();
    } catch (error) {
      main.replaceChildren(h("p", { class: "bad" }, "The dashboard's API does not answer: " + error.message));
      return;
    }
    if (!session.authenticated) {
      const refused = session.error;
      sessionStorage.removeItem(KEY);
      login(refused ? "That key was refused: " + refused : null);
      return;
    }
    route();
  }

  // -- chart ----------------------------------------------------------------------

  function chart(buckets) {
    const W = 860, H = 220, left = 44, right = 56, top = 12, bottom = 28;
    const plotW = W - left - right, plotH = H - top - bottom;
    const counts = buckets.map((b) => b.serves + b.updates);
    const lags = buckets.map((b) => b.lag_p50_ms);
    const maxCount = Math.max(1, ...counts);
    const maxLag = Math.max(1, ...lags.filter((v) => v !== null));
    const step = plotW / Math.max(1, buckets.length);
    const x = (i) => left + i * step;
    const yCount = (v) => top + plotH - (v / maxCount) * plotH;
    const yLag = (v) => top + plotH - (v / maxLag) * plotH;
    const bars = buckets.map((b, i) =>
      s("rect", {
        class: "throughput-bar", x: x(i) + 1, y: yCount(counts[i]), width: Math.max(1, step - 2),
        height: (counts[i] / maxCount) * plotH, fill: "#9ab8f0", "data-count": counts[i],
      }, s("title", null, `${clock(b.start)}: ${b.serves} serves, ${b.updates} updates, ${b.errors} errors`)),
    );
    const points = [];
    buckets.forEach((b, i) => {
      if (b.lag_p50_ms === null) return;
      points.push([x(i) + step / 2, yLag(b.lag_p50_ms), b]);
    });
    const line = points.length > 1
      ? s("polyline", { class: "lag-line", fill: "none", stroke: "#d9480f", "stroke-width": 2,
          points: points.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(" ") })
      : null;
    const dots = points.map(([px, py, b]) =>
      s("circle", { class: "lag-point", cx: px.toFixed(1), cy: py.toFixed(1), r: 3, fill: "#d9480f", "data-lag": b.lag_p50_ms },
        s("title", null, `${clock(b.start)}: update lag p50 ${ms(b.lag_p50_ms)}, max ${ms(b.lag_max_ms)}`)));
    const axis = [
      s("line", { x1: left, y1: top + plotH, x2: left + plotW, y2: top + plotH, stroke: "#c5cbd6" }),
      s("text", { x: left - 6, y: top + 10, "text-anchor": "end" }, String(maxCount)),
      s("text", { x: left - 6, y: top + plotH, "text-anchor": "end" }, "0"),
      s("text", { x: left + plotW + 6, y: top + 10 }, ms(maxLag)),
      s("text", { x: left + plotW + 6, y: top + plotH }, "0 ms"),
    ];
    if (buckets.length) {
      const marks = [0, Math.floor(buckets.length / 2), buckets.length - 1];
      for (const i of new Set(marks)) {
        axis.push(s("text", { x: x(i) + step / 2, y: H - 8, "text-anchor": "middle" }, clock(buckets[i].start)));
      }
    }
    const total = counts.reduce((a, b) => a + b, 0);
    return h(
      "section",
      { id: "timeline-section" },
      h("h2", null, "Throughput and update lag, last hour"),
      h("div", { class: "legend" },
        h("span", null, h("span", { class: "swatch bars" }), "runs per minute (serves + updates; left axis)"),
        h("span", null, h("span", { class: "swatch line" }), "update lag p50 (enqueue to commit; right axis)"),
        h("span", { class: "muted" }, `${total} runs in the window`)),
      s("svg", { id: "timeline", class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
        "aria-label": "runs per minute and update lag over the last hour" }, axis, bars, line, dots),
    );
  }

  // -- pages -------------------------------------------------------------------------

  function flowList(flows) {
    return h("ul", { class: "flows" }, flows.map((f) => h("li", null,
      h("b", null, f.name), " ",
      f.serve ? h("span", { class: "badge serve" }, `serve ${f.serve} (${f.serve_kind})`) : null,
      f.updates.map((u) => h("span", { class: "badge update" }, "update " + u)),
      f.triggers.map((t) => h("span", { class: "badge trigger" }, "on " + t)),
      f.schedules.map((t) => h("span", { class: "badge schedule" }, t)))));
  }

  async function overview() {
    const [data, timeline] = await Promise.all([call("overview"), call("timeline")]);
    const rows = data.components.map((c) => {
      const f = c.freshness;
      return h("tr", { "data-component": c.name },
        h("td", null, h("a", { href: `#/components/${enc(c.name)}`, class: "component-link" }, c.name)),
        h("td", null, flowList(c.flows)),
        num(c.instances, { class: "num instances" }),
        num(f ? f.pending : "–", { class: "num depth" }),
        num(f ? ms(f.lag_p50_ms) : "–"),
        num(f ? ms(f.lag_p99_ms) : "–"),
        num(f ? f.failed : "–", { class: f && f.failed ? "num failed bad" : "num failed" }));
    });
    return [
      h("h1", null, "Overview"),
      h("section", null, table(["Component", "Flows", "Instances#", "Queue depth#", "Lag p50#", "Lag p99#", "Failed#"],
        rows.length ? rows : [empty(7, "No components you may read.")], { id: "components" })),
      chart(timeline),
    ];
  }

  // Model calls per flow (or per model): cost, tokens, latency, cache hits.
  function usageRows(rows, key) {
    return rows.map((u) => h("tr", { "data-usage": key(u) },
      h("td", null, key(u) || "(outside flows)"), num(count(u.calls), { class: "num calls" }),
      num(u.errors, { class: u.errors ? "num bad" : "num" }), num(count(u.tokens), { class: "num tokens" }),
      num(usd(u.cost), { class: "num cost", "data-cost": u.cost }), num(ms(u.latency_p50_ms), { class: "num p50" }),
      num(ms(u.latency_p95_ms), { class: "num p95" }), num(ms(u.ttft_p50_ms)),
      num(pct(u.cache_hit_rate), { class: "num cache-hits" }), num(u.retries)));
  }
  const USAGE_HEADERS = ["Calls#", "Errors#", "Tokens#", "Cost#", "p50#", "p95#", "TTFT p50#", "Cache hits#", "Retries#"];

  function usageTable(first, rows, key, id, none) {
    return table([first, ...USAGE_HEADERS], rows.length ? usageRows(rows, key) : [empty(10, none)], { id });
  }

  async function component(name) {
    const [data, models] = await Promise.all([call(`components/${enc(name)}`), call(`components/${enc(name)}/models`)]);
    const c = data.component, f = data.freshness;
    const instances = data.instances.map((i) => h("tr", { "data-instance": i.instance },
      h("td", null, h("a", { href: `#/components/${enc(c.name)}/instances/${enc(i.instance)}`, class: "instance-link" }, i.instance)),
      num(i.version), num(i.keys), num(bytes(i.size))));
    return [
      h("h1", null, h("a", { href: "#/" }, "Overview"), " / ", c.name),
      f ? h("div", { class: "stat-row" },
        h("div", null, h("b", null, f.pending), "queued"), h("div", null, h("b", null, ms(f.lag_p50_ms)), "lag p50"),
        h("div", null, h("b", null, ms(f.lag_p99_ms)), "lag p99"), h("div", null, h("b", null, f.failed), "failed")) : null,
      h("section", null, h("h2", null, "Flows"), flowList(c.flows)),
      h("section", null, h("h2", null, "Model calls per flow, last day"),
        usageTable("Flow", models.flows, (u) => u.flow, "component-models", "No model calls in the last day.")),
      h("section", null, h("h2", null, `Instances (${c.instances})`),
        table(["Instance", "Version#", "Keys#", "Size#"], instances.length ? instances : [empty(4, "No instances yet.")],
          { id: "instances" }),
        data.truncated ? h("p", { class: "muted" }, "Only the first instances are shown.") : null),
    ];
  }

  async function showHistory(c, i, key, row, button) {
    const next = row.nextElementSibling;
    if (next && next.classList.contains("history")) {
      next.remove();
      button.textContent = "History";
      return;
    }
    const versions = await call(`components/${enc(c)}/instances/${enc(i)}/history?key=${enc(key)}`);
    const canWrite = session.principal && session.principal.write;
    const rows = versions.map((v) => h("tr", { "data-version": v.version },
      num(v.version), num(v.deleted ? "deleted" : bytes(v.size)), h("td", null, when(v.written_at)),
      h("td", null, h("code", { class: "preview" }, v.value === null ? "" : v.value)),
      h("td", null, v.current ? h("span", { class: "muted" }, "current")
        : canWrite ? h("button", { class: "rollback", onclick: () => rollback(c, i, key, v.version) }, "Roll back to this") : null)));
    const inner = table(["Version#", "Size#", "Written", "Value", ""], rows, { class: "history-table" });
    row.after(h("tr", { class: "history", "data-history-of": key }, h("td", { colspan: 6 }, inner)));
    button.textContent = "Hide";
  }

  async function rollback(c, i, key, version) {
    await act(() => call(`components/${enc(c)}/instances/${enc(i)}/rollback`, { method: "POST", body: { key, version } }),
      (r) => `${key} restored to version ${r.restored_version}, committed as version ${r.new_version}`);
  }

  async function instance(c, i) {
    const data = await call(`components/${enc(c)}/instances/${enc(i)}`);
    const st = data.state;
    const rows = st.keys.map((k) => {
      const button = h("button", { class: "history-button" }, "History");
      const row = h("tr", { "data-key": k.key },
        h("td", { class: "key" }, h("b", null, k.key)), num(k.version, { class: "num version" }),
        num(bytes(k.size), { class: "num size", "data-bytes": k.size }), h("td", null, when(k.written_at)),
        h("td", null, h("code", { class: "preview" }, k.value === null ? "" : k.value)), h("td", null, button));
      button.addEventListener("click", () => showHistory(c, i, k.key, row, button).catch(failed));
      return row;
    });
    return [
      h("h1", null, h("a", { href: "#/" }, "Overview"), " / ", h("a", { href: `#/components/${enc(c)}` }, c), " / ", i),
      h("div", { class: "stat-row" }, h("div", null, h("b", { id: "state-version" }, st.version), "state version"),
        h("div", null, h("b", null, st.keys.length), "keys"), h("div", null, h("b", null, bytes(st.size)), "stored")),
      h("section", null, h("h2", null, "State"),
        table(["Key", "Version#", "Size#", "Written", "Value (preview)", ""], rows.length ? rows : [empty(6, "No keys.")],
          { id: "state" })),
      data.failures.length ? h("section", null, h("h2", null, "Failed updates"), data.failures.map(failureCard)) : null,
    ];
  }

  function failureCard(f) {
    const path = `components/${enc(f.component)}/instances/${enc(f.instance)}/failures/${f.op_id}`;
    return h("div", { class: "card failure", "data-op-id": f.op_id },
      h("div", null, h("b", null, `op ${f.op_id}`), " · ",
        h("a", { href: `#/components/${enc(f.component)}/instances/${enc(f.instance)}` }, `${f.component}/${f.instance}`),
        ` · flow ${f.flow} · failed ${when(f.failed_at)}`),
      h("div", { class: "summary" }, f.summary),
      h("details", null, h("summary", null, "Traceback"), h("pre", { class: "traceback" }, f.error)),
      h("div", { class: "actions" },
        h("button", { class: "retry primary", onclick: () => act(() => call(path + "/retry", { method: "POST" }),
          (r) => `op ${r.op_id} queued again as op ${r.new_op_id}`) }, "Retry"),
        h("button", { class: "drop danger", onclick: () => act(() => call(path + "/drop", { method: "POST" }),
          (r) => `op ${r.op_id} dropped`) }, "Drop")));
  }

  async function act(request, describe) {
    try {
      const result = await request();
      await route();
      notice(describe(result), false);
    } catch (error) {
      failed(error);
    }
  }

  function failed(error) {
    if (error.status === 401) {
      start();
      return;
    }
    const why = error.status === 403 ? "Refused (403): " : error.status ? `Error (${error.status}): ` : "Error: ";
    notice(why + error.message, true);
  }

  async function queue() {
    const data = await call("queue");
    const rows = data.components.map((q) => h("tr", { "data-component": q.component },
      h("td", null, h("a", { href: `#/components/${enc(q.component)}` }, q.component)),
      num(q.pending, { class: "num depth" }), num(q.instances_waiting), num(seconds(q.oldest_wait_s)),
      num(ms(q.lag_p50_ms)), num(ms(q.lag_p99_ms)), num(q.updates), num(q.failed, { class: q.failed ? "num bad" : "num" })));
    return [
      h("h1", null, "Queue"),
      h("section", null, table(["Component", "Depth#", "Instances waiting#", "Oldest wait#", "Lag p50#", "Lag p99#",
        "Updates (5 min)#", "Failed#"], rows.length ? rows : [empty(8, "No components with update ops.")], { id: "queues" })),
      h("h2", null, `Failed ops (${data.failures.length})`),
      data.failures.length ? h("div", { id: "failures" }, data.failures.map(failureCard))
        : h("p", { class: "muted", id: "failures" }, "No failed ops."),
    ];
  }

  // The server's runs-log writer: a banner when it is dead, behind or failing to store runs.
  function runsLogStatus(log) {
    if (!log) return h("p", { class: "muted", id: "runs-log-status" }, "This app keeps no runs log.");
    if (log.warning) {
      return h("div", { class: "banner error", id: "runs-log-warning", role: "alert" },
        h("b", null, "Runs log unhealthy: "), log.warning,
        h("div", { class: "muted" }, `${log.written} written, ${log.pending} pending, ${log.failed} failed, `
          + `${log.dropped} dropped, ${log.lost} lost (server process ${log.pid}; counts since it started)`));
    }
    return h("p", { class: "muted", id: "runs-log-status" },
      `Runs log writer: healthy, ${log.written} written, ${log.pending} pending, ${log.failed} failed.`);
  }

  // A run's model calls, in a row under it (the button toggles it).
  async function showCalls(runId, row, button) {
    const next = row.nextElementSibling;
    if (next && next.classList.contains("calls")) {
      next.remove();
      return;
    }
    const found = await call(`runs/${enc(runId)}/models`);
    const rows = found.map((c) => h("tr", { "data-call": c.id },
      h("td", null, when(c.started_at)), h("td", null, c.model), h("td", null, c.operation),
      h("td", { class: "status-" + c.status }, c.status), num(count(c.prompt_tokens)), num(count(c.completion_tokens)),
      num(usd(c.cost)), num(ms(c.latency_ms)), num(ms(c.ttft_ms)), h("td", null, c.cache_hit || ""), num(c.retries),
      h("td", null, c.error ? h("code", { class: "preview" }, c.error) : "")));
    const inner = table(["Started", "Model", "Operation", "Status", "Prompt#", "Completion#", "Cost#", "Latency#", "TTFT#",
      "Cache", "Retries#", "Error"], rows.length ? rows : [empty(12, "No model calls.")], { class: "calls-table" });
    row.after(h("tr", { class: "calls", "data-calls-of": runId }, h("td", { colspan: 11 }, inner)));
    button.blur();
  }

  async function runs(params) {
    const query = new URLSearchParams();
    for (const name of ["component", "status", "kind"]) if (params.get(name)) query.set(name, params.get(name));
    const [overviewData, stats, latest, writer] = await Promise.all([call("overview"), call("stats"),
      call("runs?" + query), call("runs-log")]);
    const select = (name, options) => {
      const el = h("select", { name, id: "filter-" + name },
        options.map(([value, label]) => h("option", { value, selected: (params.get(name) || "") === value }, label)));
      el.addEventListener("change", () => {
        const next = new URLSearchParams(params);
        if (el.value) next.set(name, el.value); else next.delete(name);
        location.hash = "#/runs?" + next;
      });
      return h("label", null, name, el);
    };
    const statRows = stats.map((x) => h("tr", { "data-flow": `${x.component}/${x.flow}/${x.kind}` },
      h("td", null, x.component), h("td", null, x.flow), h("td", null, x.kind), num(x.count),
      num(x.errors, { class: x.errors ? "num bad" : "num" }), num(ms(x.latency_p50_ms)), num(ms(x.latency_p95_ms)),
      num(ms(x.latency_p99_ms)), num(x.feedback_count, { class: "num feedback-count" }),
      num(x.feedback_mean_score === null ? "–" : x.feedback_mean_score.toFixed(2))));
    const runRows = latest.map((r) => h("tr", { "data-run": r.id, "data-status": r.status },
      h("td", null, when(r.started_at)), h("td", null, r.component),
      h("td", null, h("a", { href: `#/components/${enc(r.component)}/instances/${enc(r.instance)}` }, r.instance)),
      h("td", null, r.flow), h("td", null, r.kind), h("td", { class: "status-" + r.status }, r.status),
      num(ms(r.latency_ms)), num(r.waited_ms === null ? "–" : ms(r.waited_ms)),
      h("td", { class: "num run-cost" }, r.models ? h("button", { class: "calls-button", title: "Show the model calls",
        onclick: (event) => showCalls(r.id, event.target.closest("tr"), event.target).catch(failed) }, usd(r.models.cost)) : "–"),
      num(r.models ? count(r.models.tokens) : "–"),
      h("td", null, r.error ? h("code", { class: "preview" }, r.error.trim().split("\n").pop()) : "")));
    return [
      h("h1", null, "Runs"),
      runsLogStatus(writer.runs_log),
      h("section", null, h("h2", null, "Latency, errors and feedback, last hour"),
        table(["Component", "Flow", "Kind", "Runs#", "Errors#", "p50#", "p95#", "p99#", "Feedback#", "Mean score#"],
          statRows.length ? statRows : [empty(10, "No runs in the last hour.")], { id: "stats" })),
      h("section", null, h("h2", null, "Latest runs"),
        h("div", { class: "filters" },
          select("component", [["", "all"], ...overviewData.components.map((c) => [c.name, c.name])]),
          select("status", [["", "all"], ["ok", "ok"], ["error", "error"], ["discarded", "discarded"]]),
          select("kind", [["", "all"], ["serve", "serve"], ["update", "update"]])),
        table(["Started", "Component", "Instance", "Flow", "Kind", "Status", "Latency#", "Waited#", "Model cost#", "Tokens#",
          "Error"], runRows.length ? runRows : [empty(11, "No runs match.")], { id: "runs" })),
    ];
  }

  const WINDOWS = [["3600", "last hour"], ["86400", "last day"], ["604800", "last 7 days"], ["2592000", "last 30 days"]];

  async function models(params) {
    const window = WINDOWS.some(([v]) => v === params.get("window")) ? params.get("window") : "86400";
    const label = WINDOWS.find(([v]) => v === window)[1];
    const data = await call("models/usage?window_s=" + window);
    const picker = h("select", { name: "window", id: "filter-window" },
      WINDOWS.map(([value, text]) => h("option", { value, selected: value === window }, text)));
    picker.addEventListener("change", () => { location.hash = "#/models?window=" + picker.value; });
    const total = data.models.reduce((sum, m) => sum + m.cost, 0);
    const calls = data.models.reduce((sum, m) => sum + m.calls, 0);
    const tokens = data.models.reduce((sum, m) => sum + m.tokens, 0);
    const days = data.instance_days.map((d) => h("tr", { "data-instance-day": `${d.component}/${d.instance}/${d.day}` },
      h("td", null, d.day), h("td", null, d.component),
      h("td", null, h("a", { href: `#/components/${enc(d.component)}/instances/${enc(d.instance)}` }, d.instance)),
      num(count(d.calls)), num(d.errors, { class: d.errors ? "num bad" : "num" }), num(count(d.tokens)),
      num(usd(d.cost), { class: "num cost", "data-cost": d.cost })));
    return [
      h("h1", null, "Models"),
      h("div", { class: "filters" }, h("label", null, "window", picker)),
      h("div", { class: "stat-row" }, h("div", null, h("b", { id: "models-cost" }, usd(total)), "cost"),
        h("div", null, h("b", null, count(calls)), "calls"), h("div", null, h("b", null, count(tokens)), "tokens")),
      h("section", null, h("h2", null, `Per model, ${label}`),
        usageTable("Model", data.models, (u) => u.model, "models", "No model calls in this window.")),
      h("section", null, h("h2", null, `Per flow, ${label}`),
        usageTable("Component / flow", data.flows, (u) => (u.component ? `${u.component}/${u.flow}` : ""), "model-flows",
          "No model calls in this window.")),
      h("section", null, h("h2", null, `Per instance and day (UTC), ${label}`),
        table(["Day", "Component", "Instance", "Calls#", "Errors#", "Tokens#", "Cost#"],
          days.length ? days : [empty(7, "No model calls in this window.")], { id: "instance-days" }),
        data.truncated ? h("p", { class: "muted" }, "Only the costliest rows are shown.") : null),
    ];
  }

  // -- routing --------------------------------------------------------------------------

  let rendering = 0;

  async function route() {
    const ticket = ++rendering;
    const [path, search] = (location.hash.replace(/^#/, "") || "/").split("?");
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    let page = "overview", render;
    if (parts[0] === "components" && parts.length === 2) render = () => component(parts[1]);
    else if (parts[0] === "components" && parts[2] === "instances" && parts.length === 4) render = () => instance(parts[1], parts[3]);
    else if (parts[0] === "queue") { page = "queue"; render = queue; }
    else if (parts[0] === "runs") { page = "runs"; render = () => runs(new URLSearchParams(search || "")); }
    else if (parts[0] === "models") { page = "models"; render = () => models(new URLSearchParams(search || "")); }
    else render = overview;
    for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.page === page);
    try {
      const content = await render();
      if (ticket !== rendering) return; // a later navigation won
      main.replaceChildren(...content.filter(Boolean));
      main.dataset.page = page;
      main.dataset.loaded = location.hash || "#/";
    } catch (error) {
      if (error.status === 401) return start();
      if (ticket !== rendering) return;
      main.replaceChildren(h("p", { class: "bad", id: "page-error" }, `Could not load this page: ${error.message}`));
    }
  }

  window.addEventListener("hashchange", () => {
    notice("");
    if (session && session.authenticated) route();
  });
  start();
})();
