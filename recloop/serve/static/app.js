// recloop live: search the catalog, send feedback events, watch the recommendations change.
// Plain JavaScript against the JSON API (see /docs); no build step.
"use strict";

const $ = (selector) => document.querySelector(selector);
const state = {
  userId: localStorage.getItem("recloop.user") || newUserId(),
  apiKey: localStorage.getItem("recloop.key") || "",
  refreshes: 0,
};

function newUserId() {
  return "web-" + Math.random().toString(36).slice(2, 10);
}

function setStatus(text, isError = false) {
  const status = $("#status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

async function api(method, path, body) {
  const headers = { "content-type": "application/json" };
  if (state.apiKey) headers["X-API-Key"] = state.apiKey;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.detail || `${method} ${path}: HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function itemRow(item, { score, reasons, explored } = {}) {
  const row = $("#item-row").content.firstElementChild.cloneNode(true);
  row.dataset.itemId = item.item_id;
  row.querySelector(".title").textContent = item.title || item.item_id;
  const meta = [];
  if (item.features && item.features.genre && item.features.genre.length) meta.push(item.features.genre.join(", "));
  if (score !== undefined) meta.push(`score ${score.toFixed(3)}`);
  if (item.cold) meta.push("new item");
  if (item.known) { meta.push("you have this"); row.classList.add("known"); }
  if (explored) { meta.push("exploring"); row.classList.add("explored"); }
  row.querySelector(".meta").textContent = meta.join(" · ");
  const list = row.querySelector(".reasons");
  for (const reason of reasons || []) {
    const li = document.createElement("li");
    li.textContent = reason;
    list.appendChild(li);
  }
  row.querySelector(".like").addEventListener("click", () => sendEvent(row, item, "click"));
  row.querySelector(".skip").addEventListener("click", () => sendEvent(row, item, "skip"));
  row.querySelector(".rate").addEventListener("change", (e) => {
    if (e.target.value) sendEvent(row, item, "rate", Number(e.target.value));
  });
  return row;
}

async function sendEvent(row, item, type, value) {
  const event = { user_id: state.userId, item_id: item.item_id, type };
  if (value !== undefined) event.value = value;
  if (item.request_id) event.request_id = item.request_id; // attributes it to the answer that showed it
  try {
    await api("POST", "/events", event);
  } catch (error) {
    setStatus(`Could not record the ${type}: ${error.message}`, true);
    return;
  }
  row.classList.add("done");
  const li = document.createElement("li");
  li.textContent = `${type}${value !== undefined ? " " + value : ""}: ${item.title || item.item_id}`;
  $("#activity").prepend(li);
  setStatus(`Recorded ${type} on ${item.title || item.item_id}.`);
  await refresh();
}

async function search(query) {
  const results = $("#results");
  if (!query.trim()) { results.replaceChildren(); return; }
  try {
    const path = `/items?q=${encodeURIComponent(query)}&limit=15`;
    let data;
    try {
      data = await api("GET", `${path}&user_id=${encodeURIComponent(state.userId)}`); // marks what the user has
    } catch (error) {
      if (error.status !== 404) throw error;
      data = await api("GET", path); // a visitor with no events yet
    }
    results.replaceChildren(...data.items.map((item) => itemRow(item)));
    if (!data.items.length) setStatus(`No title contains “${query}”.`);
  } catch (error) {
    setStatus(error.message, true);
  }
}

async function refresh() {
  const request = { k: 10, explain: true, diversity: Number($("#diversity").value) };
  const genre = $("#filter").value;
  if (genre) request.filters = { genre: [genre] };
  let data;
  try {
    data = await api("POST", "/recommend", { user_id: state.userId, ...request });
  } catch (error) {
    if (error.status !== 404) { setStatus(error.message, true); return; }
    data = await api("POST", "/recommend", { items: [], ...request }); // a visitor with no events yet
    data.source = "popular, until you give feedback";
  }
  const recs = $("#recs");
  recs.replaceChildren(...data.items.map(
    (r) => itemRow({ item_id: r.item_id, title: r.title, request_id: data.request_id }, r)));
  $("#source").textContent = `(${data.source}, model ${data.model} v${data.generation}` +
    (data.arm ? `, arm ${data.arm})` : ")");
  state.refreshes += 1;
  recs.dataset.version = String(state.refreshes);
}

async function loadFilters() {
  try {
    const features = await api("GET", "/features");
    const select = $("#filter");
    for (const value of features.genre || []) {
      const option = document.createElement("option");
      option.value = option.textContent = value;
      select.appendChild(option);
    }
  } catch (error) { /* the catalog has no genres: keep "any" */ }
}

function number(value, digits = 3) {
  return value === null || value === undefined ? "-" : value.toFixed(digits);
}

async function onlineReport() {
  // The same table as `recloop online-report` (GET /online-report; needs the API key when one is set).
  let report;
  try {
    report = await api("GET", "/online-report");
  } catch (error) {
    $("#online-summary").textContent = error.message;
    return;
  }
  const rows = [];
  const tests = [];
  for (const [part, title] of [["split", "one arm"], ["interleaving", "interleaved"]]) {
    const section = report[part];
    if (!section) continue;
    for (const arm of section.arms) {
      const tr = document.createElement("tr");
      const cells = [title, arm.arm, arm.users, arm.impressions, arm.clicks, number(arm.ctr),
                     `${number(arm.ctr_low)} – ${number(arm.ctr_high)}`, arm.clicks_at.slice(0, 10).join(" ")];
      for (const value of cells) {
        const td = document.createElement("td");
        td.textContent = String(value);
        tr.appendChild(td);
      }
      rows.push(tr);
    }
    const test = section.test;
    if (test) {
      const li = document.createElement("li");
      li.textContent = `${title}: ${test.name}: p = ${test.p.toPrecision(3)}; ` +
        (test.winner ? `winner ${test.winner}` : "no significant difference");
      tests.push(li);
    }
  }
  $("#online-table tbody").replaceChildren(...rows);
  $("#online-tests").replaceChildren(...tests);
  $("#online-summary").textContent = `${report.impressions} impressions`;
}

function setUser(id) {
  state.userId = id;
  localStorage.setItem("recloop.user", id);
  $("#user-id").value = id;
  $("#activity").replaceChildren();
}

let searchTimer;
$("#search").addEventListener("input", (e) => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => search(e.target.value), 150);
});
$("#user-id").addEventListener("change", (e) => { setUser(e.target.value.trim() || newUserId()); refresh(); });
$("#new-user").addEventListener("click", () => { setUser(newUserId()); refresh(); });
$("#api-key").addEventListener("change", (e) => {
  state.apiKey = e.target.value;
  localStorage.setItem("recloop.key", state.apiKey);
});
$("#diversity").addEventListener("change", refresh);
$("#online-panel").addEventListener("toggle", (e) => { if (e.target.open) onlineReport(); });
$("#online-refresh").addEventListener("click", onlineReport);
$("#filter").addEventListener("change", refresh);

setUser(state.userId);
$("#api-key").value = state.apiKey;
loadFilters();
refresh();
