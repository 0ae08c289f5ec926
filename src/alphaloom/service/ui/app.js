// The dashboard: a single page with hash routes. Each page renders into #view and returns a cleanup
// function that closes its sockets, timers and charts when the user moves on.

import { api, ApiError, clearSession, liveSocket, login, onUnauthorized, session } from "./api.js";
import { fmtNumber, lineChart, meter } from "./charts.js";

const ROLES = ["viewer", "trader", "admin"];
const ROUTES = {
  overview: { title: "Overview", render: overviewPage },
  signals: { title: "Signals", render: signalsPage },
  positions: { title: "Positions & orders", render: positionsPage },
  backtests: { title: "Backtests", render: backtestsPage },
  models: { title: "Models", render: modelsPage },
  risk: { title: "Risk", render: riskPage },
};
const STRATEGIES = ["all", "ensemble", "buy_and_hold", "ppo", "sac", "td3", "rainbow"];

const state = { me: null, cleanup: null, globalRisk: null, expiryTimer: null, renderSeq: 0 };

// ---------------------------------------------------------------- small DOM helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function table(caption, columns, rows, rowFn, attrs = {}) {
  const body = h("tbody");
  for (const r of rows) body.append(rowFn(r));
  const t = h(
    "table",
    attrs,
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    body,
  );
  if (rows.length === 0) {
    body.append(h("tr", { class: "empty" }, h("td", { colspan: columns.length }, "Nothing yet.")));
  }
  return t;
}

function fmtTime(ts) {
  if (ts == null || ts === "") return "–";
  const d = new Date(typeof ts === "number" && ts < 1e11 ? ts * 1000 : ts);
  if (Number.isNaN(d.getTime())) return String(ts);
  return `${d.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

function fmtMoney(v) {
  if (v == null || Number.isNaN(Number(v))) return "–";
  return Number(v).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

function fmtPct(v) {
  if (v == null || Number.isNaN(Number(v))) return "–";
  return `${(Number(v) * 100).toFixed(2)}%`;
}

function fmtValue(v) {
  if (v == null) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : fmtNumber(v, 4);
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (Array.isArray(v)) return v.length ? v.map(fmtValue).join(", ") : "–";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

// Flatten {a: {b: 1}} to [["a.b", 1]] for key/value displays of nested settings.
function flatten(obj, prefix = "") {
  const out = [];
  if (obj == null || typeof obj !== "object" || Array.isArray(obj)) return [[prefix || "value", obj]];
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length) out.push(...flatten(v, key));
    else out.push([key, v]);
  }
  return out;
}

function kvList(obj, label) {
  const dl = h("dl", { class: "kv", "aria-label": label });
  for (const [k, v] of flatten(obj)) dl.append(h("dt", {}, k), h("dd", {}, fmtValue(v)));
  if (!dl.children.length) dl.append(h("dt", {}, "–"), h("dd", {}, "none"));
  return dl;
}

// Lists may come bare or wrapped ({items: [...]}, {positions: [...]}, {SYM: {...}}).
function rowsOf(body, ...keys) {
  if (Array.isArray(body)) return body;
  if (body && typeof body === "object") {
    for (const k of [...keys, "items", "data", "results"]) if (Array.isArray(body[k])) return body[k];
    const vals = Object.values(body);
    if (vals.every((v) => v && typeof v === "object" && !Array.isArray(v))) {
      return Object.entries(body).map(([k, v]) => ({ symbol: k, ...v }));
    }
  }
  return [];
}

function roleAtLeast(role) {
  const mine = state.me?.role || session()?.role || "viewer";
  return ROLES.indexOf(mine) >= ROLES.indexOf(role);
}

function card(label, value, attrs = {}) {
  return h("div", { class: "card", ...attrs }, h("div", { class: "card-label" }, label), h("div", { class: "card-value" }, value));
}

function stateBadge(s) {
  const name = String(s || "unknown").toLowerCase();
  return h("span", { class: `badge state-${name}`, "data-state": name }, name.toUpperCase());
}

// ---------------------------------------------------------------- alerts

function showError(err, where = "") {
  const box = document.getElementById("alerts");
  const msg = err instanceof ApiError ? `${err.status ? `${err.status}: ` : ""}${err.message}` : String(err?.message || err);
  const item = h(
    "div",
    { class: "alert" },
    h("span", {}, where ? `${where}: ${msg}` : msg),
    h("button", { type: "button", class: "link", "aria-label": "Dismiss", onclick: () => item.remove() }, "×"),
  );
  box.append(item);
  setTimeout(() => item.remove(), 15000);
}

function reasonsOf(err) {
  const b = err?.body;
  const list = b?.reasons || b?.detail?.reasons || (Array.isArray(b?.detail) ? b.detail : null);
  return Array.isArray(list) ? list.map((r) => (typeof r === "string" ? r : r?.msg || JSON.stringify(r))) : [];
}

// ---------------------------------------------------------------- confirmation modal

function confirmWithReason(title, text, okLabel) {
  const dlg = document.getElementById("confirm-dialog");
  const form = document.getElementById("confirm-form");
  const reason = document.getElementById("confirm-reason");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  reason.value = "";
  return new Promise((resolve) => {
    const done = (value) => {
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      dlg.removeEventListener("cancel", onCancel);
      if (dlg.open) dlg.close();
      resolve(value);
    };
    const onSubmit = (ev) => {
      ev.preventDefault();
      if (!reason.reportValidity()) return;
      done(reason.value.trim());
    };
    const onCancel = (ev) => {
      ev.preventDefault();
      done(null);
    };
    const cancel = document.getElementById("confirm-cancel");
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    dlg.addEventListener("cancel", onCancel);
    dlg.showModal();
    reason.focus();
  });
}

// ---------------------------------------------------------------- session and routing

function showLogin(message = "") {
  teardown();
  clearTimeout(state.expiryTimer);
  state.me = null;
  if (state.globalRisk) state.globalRisk.close();
  state.globalRisk = null;
  document.getElementById("nav").hidden = true;
  document.getElementById("session").hidden = true;
  document.getElementById("view").replaceChildren();
  document.getElementById("login-view").hidden = false;
  document.getElementById("login-error").textContent = message;
  document.getElementById("api-key").focus();
  document.title = "Sign in · alphaloom";
}

function teardown() {
  if (state.cleanup) {
    try {
      state.cleanup();
    } catch (exc) {
      console.error(exc);
    }
  }
  state.cleanup = null;
}

function setRiskBadge(riskState) {
  const badge = document.getElementById("risk-badge");
  const name = String(riskState || "unknown").toLowerCase();
  badge.textContent = name.toUpperCase();
  badge.className = `badge state-${name}`;
  badge.dataset.state = name;
}

async function startSession() {
  const s = session();
  if (!s) return showLogin();
  try {
    state.me = await api("me");
  } catch (err) {
    if (err.status !== 401) showLogin(`Could not load your account: ${err.message}`);
    return;
  }
  document.getElementById("login-view").hidden = true;
  document.getElementById("nav").hidden = false;
  document.getElementById("session").hidden = false;
  document.getElementById("whoami").textContent = `${state.me.name} (${state.me.role})`;
  clearTimeout(state.expiryTimer);
  if (s.expires_at) {
    const ms = Date.parse(s.expires_at) - Date.now();
    if (ms > 0) state.expiryTimer = setTimeout(() => (clearSession(), showLogin("Your session expired; sign in again.")), ms);
  }
  api("risk").then((r) => setRiskBadge(r.state), () => {});
  state.globalRisk = liveSocket("risk", (msg) => {
    const d = msg.data || msg;
    if (d && d.state) setRiskBadge(d.state);
  });
  if (!location.hash || location.hash === "#" || location.hash === "#/login") location.hash = "#/overview";
  else route();
}

async function route() {
  if (!session() || !state.me) return;
  const name = (location.hash.replace(/^#\/?/, "").split(/[/?]/)[0] || "overview").toLowerCase();
  const page = ROUTES[name] || ROUTES.overview;
  teardown();
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.route === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${page.title} · alphaloom`;
  const view = document.getElementById("view");
  const seq = ++state.renderSeq;
  view.replaceChildren(h("h1", {}, page.title));
  view.dataset.page = name;
  view.setAttribute("aria-busy", "true");
  const cleanups = [];
  state.cleanup = () => cleanups.forEach((fn) => fn());
  try {
    await page.render(view, (fn) => cleanups.push(fn), () => seq === state.renderSeq);
  } catch (err) {
    if (seq === state.renderSeq && err.status !== 401) {
      view.append(h("p", { class: "error", role: "alert" }, `Could not load this page: ${err.message}`));
    }
  } finally {
    if (seq === state.renderSeq) view.setAttribute("aria-busy", "false");
  }
}

// ---------------------------------------------------------------- overview

async function overviewPage(view, onLeave, alive) {
  const cards = h("div", { class: "cards", "aria-label": "Portfolio summary", role: "group" });
  const chartEl = h("div", { class: "chart", id: "equity-chart", "aria-label": "Equity curve" });
  view.append(cards, h("h2", {}, "Equity"), chartEl, h("p", { class: "muted" }, "Drag to zoom, double-click to reset."));
  let chart = null;
  onLeave(() => chart && chart.destroy());
  const load = async () => {
    const pf = await api("portfolio");
    if (!alive()) return;
    cards.replaceChildren(
      card("Total value", fmtMoney(pf.total_value), { "data-field": "total_value" }),
      card("Cash", fmtMoney(pf.cash), { "data-field": "cash" }),
      card("PnL", h("span", { class: Number(pf.pnl) < 0 ? "neg" : "pos" }, fmtMoney(pf.pnl)), { "data-field": "pnl" }),
      card("Gross exposure", fmtMoney(pf.gross_exposure), { "data-field": "gross_exposure" }),
      card("Net exposure", fmtMoney(pf.net_exposure), { "data-field": "net_exposure" }),
      card("Risk state", stateBadge(pf.risk_state?.state ?? pf.risk_state), { "data-field": "risk_state" }),
    );
    const eq = rowsOf(pf.equity);
    if (chart) chart.destroy();
    chart = lineChart(chartEl, eq.map((p) => p.ts), [{ label: "equity", values: eq.map((p) => p.equity) }], {
      title: "Portfolio equity",
      yFormat: (v) => fmtNumber(v, 0),
    });
  };
  await load();
  let pending = null;
  const sock = liveSocket("fills", () => {
    clearTimeout(pending);
    pending = setTimeout(() => load().catch((e) => showError(e, "portfolio")), 300);
  });
  onLeave(() => (clearTimeout(pending), sock.close()));
}

// ---------------------------------------------------------------- signals

function votesOf(item, sig) {
  const v = item.votes ?? sig.votes ?? [];
  if (Array.isArray(v)) return v;
  return Object.entries(v).map(([agent, x]) => (typeof x === "object" ? { agent, ...x } : { agent, proposal: x }));
}

function votesCell(votes) {
  if (!votes.length) return h("span", { class: "muted" }, "–");
  const list = h("ul", { class: "votes" });
  for (const v of votes) {
    const who = v.agent ?? v.name ?? v.source ?? "agent";
    const prop = v.proposal ?? v.action ?? v.position_size ?? v.value;
    const weight = v.weight ?? v.w;
    list.append(h("li", {}, h("strong", {}, who), ` ${fmtValue(prop)}`, weight != null ? ` × ${fmtNumber(weight, 3)}` : ""));
  }
  return h("details", {}, h("summary", {}, `${votes.length} votes`), list);
}

async function signalsPage(view, onLeave, alive) {
  const status = h("p", { class: "muted", role: "status" }, "");
  const holder = h("div", {});
  view.append(
    h("p", {}, "Latest signal per symbol: the ensemble's action, its confidence and each agent's vote and weight."),
    status,
    holder,
  );
  const bySymbol = new Map();
  const draw = () => {
    const rows = [...bySymbol.values()].sort((a, b) => a.sig.symbol.localeCompare(b.sig.symbol));
    holder.replaceChildren(
      table(
        "Latest signals",
        ["Symbol", "Action", "Confidence", "Position size", "Source", "Model", "Time", "Votes", "Forecast"],
        rows,
        ({ sig, votes }) => {
          const fc = h("td", { class: "forecast" });
          const btn = h("button", { type: "button", class: "secondary small", "aria-label": `Predict ${sig.symbol}` }, "Predict");
          btn.addEventListener("click", async () => {
            btn.disabled = true;
            try {
              const p = await api("predict", { method: "POST", body: { symbol: sig.symbol } });
              fc.replaceChildren(
                h("span", { class: "probs" }, `↓ ${fmtPct(p.p_down)} · → ${fmtPct(p.p_flat)} · ↑ ${fmtPct(p.p_up)}`),
                h("span", { class: "muted" }, ` exp. return ${fmtPct(p.pred_return)} (${p.model_version}${p.source === "persistence_baseline" ? ", baseline: the CNN+LSTM is unavailable" : ""}${p.cached ? ", cached" : ""})`),
              );
            } catch (err) {
              fc.replaceChildren(h("span", { class: "error" }, err.message));
            }
          });
          fc.append(btn);
          return h(
            "tr",
            { dataset: { symbol: sig.symbol } },
            h("th", { scope: "row" }, sig.symbol),
            h("td", {}, h("span", { class: `action action-${String(sig.action).toLowerCase()}` }, sig.action)),
            h("td", {}, meter(sig.confidence, `Confidence for ${sig.symbol}`)),
            h("td", {}, fmtNumber(sig.position_size, 3)),
            h(
              "td",
              sig.fallback ? { class: "fallback", title: `Fallback: ${sig.fallback}` } : {},
              sig.source ?? "–",
              sig.fallback ? h("span", { class: "muted" }, " (fallback)") : null,
            ),
            h("td", {}, sig.model_version ?? "–"),
            h("td", {}, fmtTime(sig.ts)),
            h("td", {}, votesCell(votes)),
            fc,
          );
        },
        { id: "signals-table" },
      ),
    );
  };
  const upsert = (item) => {
    const sig = item.signal ?? item;
    if (!sig || !sig.symbol) return;
    bySymbol.set(sig.symbol, { sig, votes: votesOf(item, sig) });
  };
  const body = await api("signals");
  if (!alive()) return;
  for (const item of rowsOf(body, "signals")) upsert(item);
  draw();
  const sock = liveSocket(
    "signals",
    (msg) => {
      const d = msg.data ?? msg;
      for (const item of Array.isArray(d) ? d : [d]) upsert(item);
      draw();
    },
    (s) => (status.textContent = s === "open" ? "Live: updates arrive as they are published." : "Live updates disconnected; reconnecting…"),
  );
  onLeave(() => sock.close());
}

// ---------------------------------------------------------------- positions and orders

async function positionsPage(view, onLeave, alive) {
  const live = h("p", { class: "muted", role: "status", id: "live-status" }, "Connecting to live updates…");
  const posHolder = h("div", { id: "positions" });
  const ordHolder = h("div", { id: "orders" });
  const result = h("div", { class: "result", role: "status", "aria-live": "polite" });
  const statusFilter = h(
    "select",
    { id: "order-status-filter" },
    ["", "new", "accepted", "partially_filled", "filled", "cancelled", "rejected"].map((s) => h("option", { value: s }, s || "all")),
  );

  const canTrade = roleAtLeast("trader");
  const symbols = await api("market/symbols").catch(() => []);
  const symbolList = rowsOf(symbols, "symbols").map((s) => (typeof s === "string" ? s : s.symbol));
  const ticket = h(
    "form",
    { id: "order-form", class: "ticket", "aria-label": "New order" },
    h("h2", {}, "New order"),
    h("label", { for: "order-symbol" }, "Symbol"),
    h("input", { id: "order-symbol", name: "symbol", list: "symbol-list", required: true, value: symbolList[0] || "" }),
    h("datalist", { id: "symbol-list" }, symbolList.map((s) => h("option", { value: s }))),
    h("label", { for: "order-side" }, "Side"),
    h("select", { id: "order-side", name: "side" }, h("option", { value: "buy" }, "buy"), h("option", { value: "sell" }, "sell")),
    h("label", { for: "order-quantity" }, "Quantity"),
    h("input", { id: "order-quantity", name: "quantity", type: "number", min: "0", step: "any", required: true, value: "1" }),
    h("label", { for: "order-type" }, "Order type"),
    h("select", { id: "order-type", name: "order_type" }, h("option", { value: "market" }, "market"), h("option", { value: "limit" }, "limit")),
    h("label", { for: "order-limit" }, "Limit price"),
    h("input", { id: "order-limit", name: "limit_price", type: "number", min: "0", step: "any", disabled: true }),
    h("button", { type: "submit", disabled: !canTrade }, "Submit order"),
    canTrade ? null : h("p", { class: "muted" }, "Placing orders needs the trader role."),
  );
  const typeSel = ticket.querySelector("#order-type");
  typeSel.addEventListener("change", () => {
    const lim = ticket.querySelector("#order-limit");
    lim.disabled = typeSel.value !== "limit";
    lim.required = typeSel.value === "limit";
  });
  ticket.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(ticket);
    const body = {
      symbol: String(f.get("symbol")).trim(),
      side: f.get("side"),
      quantity: Number(f.get("quantity")),
      order_type: f.get("order_type"),
    };
    if (body.order_type === "limit") body.limit_price = Number(f.get("limit_price"));
    result.replaceChildren(h("span", { class: "muted" }, "Submitting…"));
    try {
      const o = await api("orders", { method: "POST", body });
      const id = o.client_order_id ?? o.order?.client_order_id ?? "";
      const st = o.status ?? o.state ?? o.result?.status ?? "submitted";
      result.replaceChildren(h("span", { class: "ok" }, `Order ${id} ${st}.`));
      await refresh();
    } catch (err) {
      const reasons = reasonsOf(err);
      const refused = err.status === 409;
      result.replaceChildren(
        h("div", { class: "error", role: "alert" },
          refused && reasons.length ? "Order refused by the risk manager:" : `Order ${refused ? "refused" : "failed"}: ${err.message}`,
          refused && reasons.length ? h("ul", {}, reasons.map((r) => h("li", {}, r))) : null),
      );
      // A refused order is still recorded (as rejected): show it in the table.
      if (refused) refresh().catch(() => {});
    }
  });

  view.append(
    live,
    h("div", { class: "two-col" }, h("div", {}, h("h2", {}, "Positions"), posHolder), ticket),
    result,
    h("div", { class: "row" }, h("h2", {}, "Orders"), h("label", { for: "order-status-filter" }, "Status"), statusFilter),
    ordHolder,
  );

  const drawPositions = (rows) => {
    posHolder.replaceChildren(
      table(
        "Open positions",
        ["Symbol", "Quantity", "Avg cost", "Price", "Market value", "Unrealised PnL", "Realised PnL"],
        rows,
        (p) => {
          const mv = p.market_value ?? (p.quantity != null && p.current_price != null ? p.quantity * p.current_price : null);
          const upnl = p.unrealized_pnl ?? (p.quantity != null && p.current_price != null ? p.quantity * (p.current_price - (p.avg_cost ?? 0)) : null);
          return h(
            "tr",
            { dataset: { symbol: p.symbol } },
            h("th", { scope: "row" }, p.symbol),
            h("td", {}, fmtNumber(p.quantity, 6)),
            h("td", {}, fmtMoney(p.avg_cost)),
            h("td", {}, fmtMoney(p.current_price)),
            h("td", {}, fmtMoney(mv)),
            h("td", { class: Number(upnl) < 0 ? "neg" : "pos" }, fmtMoney(upnl)),
            h("td", {}, fmtMoney(p.realized_pnl)),
          );
        },
        { id: "positions-table" },
      ),
    );
  };
  const drawOrders = (rows) => {
    ordHolder.replaceChildren(
      table(
        "Orders",
        ["Order id", "Symbol", "Side", "Quantity", "Type", "Limit", "Status", "Filled", "Avg price", "Time", ""],
        rows,
        (o) => {
          const ord = o.order ?? o;
          const id = ord.client_order_id ?? o.client_order_id;
          const st = String(o.status ?? o.state ?? o.result?.status ?? "");
          const open = !["filled", "cancelled", "rejected"].includes(st.toLowerCase());
          const cancel = open && canTrade
            ? h("button", { type: "button", class: "secondary small", "aria-label": `Cancel order ${id}` }, "Cancel")
            : null;
          if (cancel) {
            cancel.addEventListener("click", async () => {
              cancel.disabled = true;
              try {
                await api(`orders/${encodeURIComponent(id)}`, { method: "DELETE" });
                await refresh();
              } catch (err) {
                showError(err, "cancel");
                cancel.disabled = false;
              }
            });
          }
          return h(
            "tr",
            { dataset: { orderId: id, status: st.toLowerCase() } },
            h("td", { class: "mono" }, id),
            h("td", {}, ord.symbol),
            h("td", {}, ord.side),
            h("td", {}, fmtNumber(ord.quantity, 6)),
            h("td", {}, ord.order_type ?? "market"),
            h("td", {}, ord.limit_price != null ? fmtMoney(ord.limit_price) : "–"),
            h("td", {}, h("span", { class: `status status-${st.toLowerCase()}` }, st || "–")),
            h("td", {}, fmtNumber(o.filled_quantity ?? o.result?.filled_quantity, 6)),
            h("td", {}, fmtMoney(o.avg_fill_price ?? o.result?.avg_fill_price)),
            h("td", {}, fmtTime(o.updated_at ?? o.ts ?? ord.ts)),
            h("td", {}, cancel),
          );
        },
        { id: "orders-table" },
      ),
    );
  };
  const refresh = async () => {
    const q = statusFilter.value ? `?status=${encodeURIComponent(statusFilter.value)}` : "";
    const [pos, ords] = await Promise.all([api("positions"), api(`orders${q}`)]);
    if (!alive()) return;
    drawPositions(rowsOf(pos, "positions").filter((p) => Number(p.quantity) !== 0));
    drawOrders(rowsOf(ords, "orders"));
  };
  statusFilter.addEventListener("change", () => refresh().catch((e) => showError(e, "orders")));
  await refresh();
  let updates = 0;
  let pending = null;
  const onLive = (msg) => {
    updates += 1;
    live.textContent = `Live: ${updates} update${updates === 1 ? "" : "s"} received (last: ${msg.type ?? "message"}).`;
    live.dataset.updates = String(updates);
    clearTimeout(pending);
    pending = setTimeout(() => refresh().catch((e) => showError(e, "positions")), 150);
  };
  const onState = (s) => {
    if (s === "open" && !updates) live.textContent = "Live: connected, waiting for fills.";
    if (s === "closed") live.textContent = "Live updates disconnected; reconnecting…";
  };
  const sock = liveSocket("fills", onLive, onState);
  onLeave(() => (clearTimeout(pending), sock.close()));
}

// ---------------------------------------------------------------- backtests

function statsView(stats) {
  if (stats == null) return h("p", { class: "muted" }, "No statistics.");
  const rows = Array.isArray(stats) ? stats : rowsOf(stats, "summary", "rows");
  if (rows.length && rows.every((r) => r && typeof r === "object")) {
    const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
    return table("Backtest statistics", cols, rows, (r) => h("tr", {}, cols.map((c) => h("td", {}, fmtValue(r[c])))), {
      id: "backtest-stats",
    });
  }
  return kvList(stats, "Backtest statistics");
}

async function backtestsPage(view, onLeave, alive) {
  const canRun = roleAtLeast("trader");
  // Backtests need trained strategies: offer the run's symbols (those the session signals on) when known.
  const signals = await api("signals").catch(() => []);
  let symbolList = [...new Set(rowsOf(signals, "signals").map((x) => (x.signal ?? x).symbol).filter(Boolean))].sort();
  if (!symbolList.length) {
    const symbols = await api("market/symbols").catch(() => []);
    symbolList = rowsOf(symbols, "symbols").map((s) => (typeof s === "string" ? s : s.symbol));
  }
  const status = h("p", { role: "status", id: "backtest-status", "aria-live": "polite" }, "");
  const outcome = h("div", { id: "backtest-outcome" });
  const jobsHolder = h("div", {});
  const form = h(
    "form",
    { id: "backtest-form", "aria-label": "Run a backtest" },
    h("label", { for: "bt-symbols" }, "Symbols (none selected: all of the run's symbols)"),
    h("select", { id: "bt-symbols", name: "symbols", multiple: true, size: Math.min(6, Math.max(2, symbolList.length)) },
      symbolList.map((s) => h("option", { value: s }, s))),
    h("label", { for: "bt-strategy" }, "Strategy"),
    h("select", { id: "bt-strategy", name: "strategy" }, STRATEGIES.map((s) => h("option", { value: s }, s === "all" ? "all strategies" : s))),
    h("button", { type: "submit", disabled: !canRun }, "Run backtest"),
    canRun ? null : h("p", { class: "muted" }, "Running backtests needs the trader role."),
  );
  view.append(form, status, outcome, h("h2", {}, "Jobs"), jobsHolder);

  let pollTimer = null;
  let reportUrl = null;
  onLeave(() => {
    clearTimeout(pollTimer);
    if (reportUrl) URL.revokeObjectURL(reportUrl);
  });

  const loadJobs = async () => {
    const jobs = rowsOf(await api("backtests"), "jobs", "backtests");
    if (!alive()) return;
    jobsHolder.replaceChildren(
      table("Backtest jobs", ["Id", "Status", "Symbols", "Strategy", "Created", "Finished", ""], jobs, (j) => {
        const open = h("button", { type: "button", class: "secondary small", "aria-label": `Open backtest ${j.id}` }, "Open");
        open.addEventListener("click", () => follow(j.id));
        return h(
          "tr",
          { dataset: { jobId: j.id, status: j.status } },
          h("td", { class: "mono" }, j.id),
          h("td", {}, h("span", { class: `status status-${j.status}` }, j.status)),
          h("td", {}, fmtValue(j.symbols)),
          h("td", {}, j.strategy ?? "–"),
          h("td", {}, fmtTime(j.created_at)),
          h("td", {}, fmtTime(j.finished_at)),
          h("td", {}, j.status === "done" || j.status === "failed" ? open : null),
        );
      }, { id: "backtest-jobs" }),
    );
  };

  const showReport = async (id) => {
    // The report needs the bearer token, which an iframe cannot send: fetch it, then show it from a
    // blob URL in a sandbox (scripts for the charts, no access to this page).
    const resp = await api(`backtests/${encodeURIComponent(id)}/report`, { raw: true });
    const html = await resp.text();
    if (!alive()) return;
    if (reportUrl) URL.revokeObjectURL(reportUrl);
    reportUrl = URL.createObjectURL(new Blob([html], { type: "text/html" }));
    const frame = h("iframe", {
      id: "backtest-report",
      title: `Backtest report ${id}`,
      sandbox: "allow-scripts",
      src: reportUrl,
      dataset: { jobId: id },
    });
    outcome.append(h("h2", {}, "Report"), frame);
    frame.scrollIntoView({ block: "start" });
  };

  const follow = async (id) => {
    clearTimeout(pollTimer);
    outcome.replaceChildren();
    const tick = async () => {
      let job;
      try {
        job = await api(`backtests/${encodeURIComponent(id)}`);
      } catch (err) {
        status.textContent = `Backtest ${id}: ${err.message}`;
        return;
      }
      if (!alive()) return;
      status.textContent = `Backtest ${id}: ${job.status}`;
      status.dataset.status = job.status;
      if (job.status === "done") {
        outcome.replaceChildren(h("h2", {}, "Statistics"), statsView(job.stats));
        await showReport(id).catch((e) => outcome.append(h("p", { class: "error", role: "alert" }, `Report: ${e.message}`)));
        loadJobs().catch(() => {});
      } else if (job.status === "failed") {
        outcome.replaceChildren(h("p", { class: "error", role: "alert" }, `Backtest failed: ${job.error ?? "no reason given"}`));
        loadJobs().catch(() => {});
      } else {
        pollTimer = setTimeout(tick, 1000);
      }
    };
    await tick();
  };

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const chosen = [...form.querySelector("#bt-symbols").selectedOptions].map((o) => o.value);
    const strategy = form.querySelector("#bt-strategy").value.trim();
    const body = {};
    if (chosen.length) body.symbols = chosen;
    if (strategy && strategy !== "all") body.strategy = strategy;
    status.textContent = "Submitting…";
    try {
      const job = await api("backtests", { method: "POST", body });
      await loadJobs();
      await follow(job.id);
    } catch (err) {
      status.textContent = `Could not start the backtest: ${err.message}`;
    }
  });
  await loadJobs();
}

// ---------------------------------------------------------------- models

// Long key/value blocks (lineage, full metrics) fold into a <details> so tables stay readable.
function folded(obj, label, open = false) {
  if (obj == null) return h("span", { class: "muted" }, "–");
  if (typeof obj !== "object") return String(obj);
  const n = flatten(obj).length;
  return h("details", { open }, h("summary", {}, `${label} (${n} field${n === 1 ? "" : "s"})`), kvList(obj, label));
}

function lineageView(lineage, open = false) {
  return folded(lineage, "lineage", open);
}

function metricsView(metrics) {
  if (metrics == null) return h("span", { class: "muted" }, "–");
  const entries = Object.entries(metrics);
  if (entries.length <= 4) return kvList(metrics, "Metrics");
  return folded(metrics, "metrics");
}

function abView(ab) {
  if (!ab || ab.error) return h("p", { class: "error" }, `A/B status unavailable: ${ab?.error ?? "no answer"}`);
  if (ab.available === false) return h("p", { class: "muted" }, ab.detail || "No A/B test has run.");
  const { summary, ...rest } = ab;
  const rows = Array.isArray(summary) ? summary : [];
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return h(
    "div",
    {},
    kvList(rest, "A/B status"),
    rows.length ? table("A/B comparison", cols, rows, (r) => h("tr", {}, cols.map((c) => h("td", {}, fmtValue(r[c]))))) : null,
  );
}

async function modelsPage(view, onLeave, alive) {
  const detail = h("section", { id: "model-detail", "aria-live": "polite" });
  const [models, ab] = await Promise.all([api("models"), api("ab").catch((e) => ({ error: e.message }))]);
  if (!alive()) return;
  const rows = rowsOf(models, "models");
  view.append(
    table("Model registry", ["Name", "Version", "Kind", "Stage", "Serving", "Metrics", "Lineage"], rows, (m) => {
      const btn = h("button", { type: "button", class: "link" }, m.name);
      btn.addEventListener("click", () => showModel(m.name));
      return h(
        "tr",
        { dataset: { model: m.name } },
        h("th", { scope: "row" }, btn),
        h("td", {}, fmtValue(m.version ?? m.latest_version)),
        h("td", {}, m.kind ?? "–"),
        h("td", {}, h("span", { class: `stage stage-${String(m.stage ?? "").toLowerCase()}` }, m.stage ?? "–")),
        h("td", {}, m.serving ? h("strong", {}, "serving") : ""),
        h("td", { class: "small" }, metricsView(m.metrics)),
        h("td", { class: "small" }, lineageView(m.lineage)),
      );
    }, { id: "models-table" }),
    detail,
    h("h2", {}, "A/B test"),
    h("div", { id: "ab-status" }, abView(ab)),
  );

  async function showModel(name) {
    const m = await api(`models/${encodeURIComponent(name)}`).catch((e) => (showError(e, name), null));
    if (!m || !alive()) return;
    const versions = rowsOf(m.versions ?? m, "versions");
    detail.replaceChildren(
      ...[
      h("h2", {}, `Versions of ${name}`),
      m.champion != null ? h("p", {}, `Champion: version ${m.champion}`) : null,
      table(`Versions of ${name}`, ["Version", "Stage", "Aliases", "Created", "Metrics", "Lineage"], versions, (v) =>
        h(
          "tr",
          {},
          h("td", {}, fmtValue(v.version)),
          h("td", {}, v.stage ?? "–"),
          h("td", {}, fmtValue(v.aliases)),
          h("td", {}, fmtTime(v.created_at ?? v.created)),
          h("td", { class: "small" }, metricsView(v.metrics)),
          h("td", { class: "small" }, lineageView(v.lineage)),
        ),
      ),
      m.lineage ? h("div", {}, h("h3", {}, "Lineage"), lineageView(m.lineage, true)) : null,
      ].filter(Boolean),
    );
  }
}

// ---------------------------------------------------------------- risk

async function riskPage(view, onLeave, alive) {
  const isAdmin = roleAtLeast("admin");
  const stateBox = h("div", { id: "risk-state", class: "risk-state", role: "status", "aria-live": "polite" });
  const reasons = h("div", { id: "halt-reasons" });
  const limitsBox = h("div", { id: "risk-limits" });
  const measuresBox = h("div", { id: "risk-measures" });
  const killBtn = h("button", { type: "button", class: "danger big", id: "kill-switch", disabled: !isAdmin }, "Kill switch");
  const resumeBtn = h("button", { type: "button", class: "secondary", id: "resume", disabled: !isAdmin }, "Resume trading");
  const auditOut = h("div", { id: "audit-result", role: "status" });

  let current = null;
  const draw = (r) => {
    current = r;
    stateBox.replaceChildren(h("span", { class: "muted" }, "Trading state "), stateBadge(r.state));
    stateBox.dataset.state = String(r.state).toLowerCase();
    setRiskBadge(r.state);
    const hr = rowsOf(r.halt_reasons ?? []);
    const hrList = Array.isArray(r.halt_reasons) ? r.halt_reasons : r.halt_reasons ? Object.entries(r.halt_reasons).map(([k, v]) => `${k}: ${v}`) : hr;
    reasons.replaceChildren(
      h("h2", {}, "Halt reasons"),
      hrList.length ? h("ul", {}, hrList.map((x) => h("li", {}, fmtValue(x)))) : h("p", { class: "muted" }, "None: trading is not halted."),
    );
    if (r.limits !== undefined) limitsBox.replaceChildren(h("h2", {}, "Limits"), kvList(r.limits, "Risk limits"));
    if (r.measures !== undefined) measuresBox.replaceChildren(h("h2", {}, "Measures"), kvList(r.measures, "Risk measures"));
    resumeBtn.hidden = String(r.state).toLowerCase() === "normal";
    if (isAdmin && r.limits && !limitsText.matches(":focus")) limitsText.value = JSON.stringify(r.limits, null, 2);
  };
  const load = async () => {
    const r = await api("risk");
    if (alive()) draw(r);
  };

  killBtn.addEventListener("click", async () => {
    const reason = await confirmWithReason(
      "Halt trading?",
      "The kill switch halts all new risk at once: every order that would increase a position is refused until an admin resumes trading.",
      "Halt trading",
    );
    if (!reason) return;
    try {
      const r = await api("risk/kill", { method: "POST", body: { reason } });
      if (r && r.state) draw({ ...current, ...r });
      await load();
    } catch (err) {
      showError(err, "kill switch");
    }
  });
  resumeBtn.addEventListener("click", async () => {
    const reason = await confirmWithReason("Resume trading?", "Orders within limits will be accepted again.", "Resume");
    if (!reason) return;
    try {
      await api("risk/resume", { method: "POST", body: { reason } });
      await load();
    } catch (err) {
      showError(err, "resume");
    }
  });

  const limitsText = h("textarea", { id: "limits-json", rows: 14, spellcheck: "false" });
  const limitsMsg = h("p", { role: "status" });
  const limitsForm = h(
    "form",
    { id: "limits-form", "aria-label": "Change limits" },
    h("h2", {}, "Change limits"),
    h("label", { for: "limits-json" }, "Limits (JSON, changes are audited)"),
    limitsText,
    h("button", { type: "submit" }, "Save limits"),
    limitsMsg,
  );
  limitsForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let body;
    try {
      body = JSON.parse(limitsText.value);
    } catch (exc) {
      limitsMsg.textContent = `Not valid JSON: ${exc.message}`;
      return;
    }
    try {
      await api("risk/limits", { method: "PUT", body });
      limitsMsg.textContent = "Limits saved.";
      await load();
    } catch (err) {
      limitsMsg.textContent = `Not saved: ${err.message}`;
    }
  });

  const verifyBtn = h("button", { type: "button", class: "secondary" }, "Verify audit log");
  verifyBtn.addEventListener("click", async () => {
    try {
      const v = await api("audit/verify");
      auditOut.replaceChildren(
        h("p", { class: v.ok ? "ok" : "error" }, v.ok ? `Audit chain intact (${v.records ?? "?"} records).` : "Audit chain broken:"),
        ...(v.problems?.length ? [h("ul", {}, v.problems.map((p) => h("li", {}, fmtValue(p))))] : []),
      );
    } catch (err) {
      auditOut.replaceChildren(h("p", { class: "error" }, err.message));
    }
  });
  const exportBtn = (fmt) => {
    const b = h("button", { type: "button", class: "secondary" }, `Export ${fmt.toUpperCase()}`);
    b.addEventListener("click", async () => {
      try {
        const resp = await api(`audit/export?format=${fmt}`, { raw: true });
        const url = URL.createObjectURL(await resp.blob());
        const a = h("a", { href: url, download: `audit.${fmt}` });
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 5000);
      } catch (err) {
        showError(err, "audit export");
      }
    });
    return b;
  };

  view.append(
    ...[
    h("div", { class: "risk-top" }, stateBox, h("div", { class: "actions" }, killBtn, resumeBtn)),
    isAdmin ? null : h("p", { class: "muted" }, "The kill switch, resuming and changing limits need the admin role."),
    reasons,
    h("div", { class: "two-col" }, limitsBox, measuresBox),
    isAdmin ? limitsForm : null,
    isAdmin ? h("section", { "aria-label": "Audit log" }, h("h2", {}, "Audit log"), h("div", { class: "actions" }, verifyBtn, exportBtn("csv"), exportBtn("json")), auditOut) : null,
    ].filter(Boolean),
  );
  await load();
  const sock = liveSocket("risk", (msg) => {
    const d = msg.data ?? msg;
    if (d && d.state) draw({ ...current, ...d });
  });
  onLeave(() => sock.close());
}

// ---------------------------------------------------------------- boot

function boot() {
  onUnauthorized((why) => showLogin(why));
  document.getElementById("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = document.getElementById("api-key");
    const err = document.getElementById("login-error");
    err.textContent = "";
    try {
      await login(input.value.trim());
      input.value = "";
      await startSession();
    } catch (exc) {
      err.textContent = exc.status === 401 || exc.status === 403 ? `Sign-in refused: ${exc.message}` : exc.message;
    }
  });
  document.getElementById("logout").addEventListener("click", () => {
    clearSession();
    showLogin("Signed out.");
  });
  window.addEventListener("hashchange", route);
  startSession();
}

boot();
