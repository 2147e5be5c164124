// The connection page's sync panel: while a resource syncs, is queued or retries, ask the
// staff-only status endpoint every few seconds and update its State and Last error cells
// (records so far, "of about" and a progress bar when a full read's size is known).
(function () {
  "use strict";
  var script = document.currentScript;
  var url = script && script.dataset.statusUrl;
  if (!url || !document.querySelector("[data-sync-state]")) return;
  var EVERY_MS = 3000;
  var wasBusy = false;

  function cell(attr, resource) {
    return document.querySelector("[" + attr + '="' + resource + '"]');
  }

  function showProgress(state, stateCell) {
    var bar = cell("data-sync-progress", state.resource);
    if (!state.expected || state.records === null) {
      if (bar) bar.remove();
      return;
    }
    if (!bar) {
      bar = document.createElement("progress");
      bar.setAttribute("data-sync-progress", state.resource);
      stateCell.parentNode.appendChild(document.createElement("br"));
      stateCell.parentNode.appendChild(bar);
    }
    bar.max = state.expected;
    bar.value = Math.min(state.records, state.expected);
  }

  function finished() {
    var note = document.getElementById("sync-panel-finished");
    if (note) return;
    var anchor = document.querySelector("[data-sync-state]").closest("fieldset, .inline-group");
    if (!anchor) return;
    note = document.createElement("p");
    note.id = "sync-panel-finished";
    note.className = "help";
    note.setAttribute("role", "status");
    var link = document.createElement("a");
    link.href = window.location.pathname;
    link.textContent = "Reload";
    note.appendChild(document.createTextNode("The sync finished. "));
    note.appendChild(link);
    note.appendChild(document.createTextNode(" to see the new counts and times."));
    anchor.insertBefore(note, anchor.firstChild);
  }

  function apply(data) {
    (data.resources || []).forEach(function (state) {
      var stateCell = cell("data-sync-state", state.resource);
      if (stateCell) {
        stateCell.textContent = state.state;
        stateCell.classList.toggle("sync-retrying", !!state.retrying);
        showProgress(state, stateCell);
      }
      var errorCell = cell("data-sync-error", state.resource);
      if (errorCell) errorCell.textContent = state.last_error || "";
    });
    if (wasBusy && !data.busy) finished();
    wasBusy = !!data.busy;
    return data.busy;
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("status " + response.status);
        return response.json();
      })
      .then(function (data) {
        if (apply(data)) window.setTimeout(poll, EVERY_MS);
      })
      .catch(function () {
        // Signed out or the server restarting: try again, slower.
        window.setTimeout(poll, EVERY_MS * 5);
      });
  }

  poll();
})();
