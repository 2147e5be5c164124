// Keeps the portal dashboard true without a reload. While something connects or syncs, it
// polls the small status JSON (#connections[data-status-url]) every few seconds: words,
// progress and freshness chips change in place; a row that changes state (Connecting →
// Syncing → Connected, or turns red) makes it fetch the table again
// (#connections[data-refresh-url]), so the row's buttons follow. It stops when nothing is
// busy, and starts again when connect.js reports a connect ("dockside:connecting",
// "dockside:connected"). Whoever replaces the table says so with "dockside:table-refreshed"
// (connect.js then binds the new Reconnect buttons to Link).
(function () {
  "use strict";
  var section = document.getElementById("connections");
  if (!section || !section.dataset.statusUrl) return;
  var statusUrl = section.dataset.statusUrl;
  var refreshUrl = section.dataset.refreshUrl;
  var FAST_MS = 2000;
  var SLOW_MS = 10000;
  var SLOW_AFTER_MS = 5 * 60 * 1000; // a long sync: look less often after five minutes
  var timer = null;
  var polling = false;
  var startedAt = 0;
  var refreshing = null;

  function busyInPage() {
    var table = document.getElementById("connections-table");
    return !!(table && table.dataset.busy === "true");
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }

  function start(now) {
    if (!startedAt) startedAt = Date.now();
    schedule(now ? 0 : FAST_MS);
  }

  function stop() {
    clearTimeout(timer);
    timer = null;
    startedAt = 0;
  }

  function poll() {
    timer = null;
    if (polling) return;
    polling = true;
    fetch(statusUrl, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) {
        if (response.status >= 400 && response.status < 500) return {busy: false}; // logged out
        if (!response.ok) return {busy: true}; // a restart, a blip: look again
        return response.json().then(apply);
      })
      .catch(function () { return {busy: true}; })
      .then(function (result) {
        polling = false;
        if (result && result.busy) {
          schedule(Date.now() - startedAt > SLOW_AFTER_MS ? SLOW_MS : FAST_MS);
        } else {
          stop();
        }
      });
  }

  // --- Applying one answer ------------------------------------------------------------------

  function rowsChanged(data) {
    var rows = section.querySelectorAll("#connections-table tbody tr");
    var seen = {};
    rows.forEach(function (row) {
      var key = row.dataset.connectionId ? "c" + row.dataset.connectionId
        : "x" + row.dataset.exchangeId;
      seen[key] = row.dataset.state;
    });
    var wanted = 0;
    var changed = false;
    data.connections.forEach(function (connection) {
      wanted += 1;
      if (seen["c" + connection.id] !== connection.state) changed = true;
    });
    data.connecting.forEach(function (connecting) {
      wanted += 1;
      if (seen["x" + connecting.exchange_id] !== connecting.state) changed = true;
    });
    return changed || wanted !== rows.length;
  }

  function setTone(node, base, tone) {
    node.className = base + " tone-" + tone;
  }

  function updateRow(connection) {
    var row = section.querySelector('tr[data-connection-id="' + connection.id + '"]');
    if (!row) return;
    row.dataset.tone = connection.tone;
    var badge = row.querySelector('[data-live="badge"]');
    if (badge) {
      badge.textContent = connection.badge;
      setTone(badge, "badge state-badge", connection.tone);
    }
    var words = row.querySelector('[data-live="words"]');
    if (words) {
      words.textContent = connection.words;
      words.hidden = !connection.words;
      words.classList.toggle("reason", connection.tone === "red");
    }
    var bar = row.querySelector('[data-live="progress"]');
    if (bar) {
      var progress = connection.progress;
      bar.hidden = !connection.long_sync;
      if (progress && progress.total) {
        bar.max = progress.total;
        bar.value = progress.records;
        bar.textContent = progress.records + " of " + progress.total;
      } else {
        bar.removeAttribute("value"); // indeterminate: no total is known
        bar.textContent = "";
      }
    }
    var lastSync = row.querySelector('[data-live="last-sync"]');
    if (lastSync) lastSync.textContent = connection.last_sync;
    var line = section.querySelector('.freshness-line[data-connection-id="' + connection.id + '"]');
    if (!line) return;
    connection.resources.forEach(function (resource) {
      var chip = line.querySelector('.chip[data-resource="' + resource.resource + '"]');
      if (!chip) return;
      chip.textContent = resource.words;
      chip.className = "chip " + resource.state;
      chip.dataset.tone = resource.tone;
    });
  }

  function apply(data) {
    var table = document.getElementById("connections-table");
    if (rowsChanged(data)) {
      // A state changed: the row's words, buttons and chips all follow the server's page.
      // Not while someone types a new name in the table: then at the next look.
      var typing = document.activeElement && section.contains(document.activeElement) &&
        document.activeElement.tagName === "INPUT";
      if (typing) return {busy: true};
      return refresh().then(function () { return {busy: data.busy || busyInPage()}; });
    }
    if (table) table.dataset.busy = data.busy ? "true" : "false";
    data.connections.forEach(updateRow);
    return {busy: data.busy};
  }

  // --- The table, fetched again -----------------------------------------------------------

  function refresh() {
    if (!refreshUrl) return Promise.resolve();
    if (refreshing) return refreshing;
    refreshing = fetch(refreshUrl, {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        // Row menus the user has open stay open, including one opened while this fetched.
        var open = [];
        section.querySelectorAll("tr[data-connection-id] details.row-menu[open]").forEach(
          function (d) { open.push(d.closest("tr").dataset.connectionId); }
        );
        section.innerHTML = html;
        open.forEach(function (id) {
          var menu = section.querySelector('tr[data-connection-id="' + id + '"] details.row-menu');
          if (menu) menu.open = true;
        });
        document.dispatchEvent(new CustomEvent("dockside:table-refreshed", {detail: {by: "status"}}));
      })
      .catch(function () { /* the next look tries again */ })
      .then(function () { refreshing = null; });
    return refreshing;
  }

  document.addEventListener("dockside:connecting", function () {
    refresh().then(function () { start(false); });
  });
  document.addEventListener("dockside:connected", function () { start(true); });
  document.addEventListener("dockside:table-refreshed", function (event) {
    if (event.detail && event.detail.by === "status") return;
    if (busyInPage() && !timer && !polling) start(false);
  });

  if (busyInPage()) start(false);
})();
