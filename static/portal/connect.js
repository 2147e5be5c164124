// Drives Trackstar Link on a Dockside page (portal, magic link, admin).
// Config comes from <script id="link-config" type="application/json">: the Link script
// URL, our two endpoints and the CSRF token. The auth code goes to our backend at once;
// the exchange for an access token happens in a worker, and this page polls for it.
//
// Each target (the Connect button, and each connection's Reconnect button) gets its own Link
// instance: window.Trackstar.init({buttonId}) makes window["Trackstar" + buttonId], with its
// own getLinkToken. Nothing documents whether Trackstar's main.js asks for a link token on
// every open() or only on the first (API.md §10), so one shared instance could reinstall
// the connection clicked before. After a modal closes, its instance is init-ed again, so
// the next open() starts with a fresh link token.
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("link-config").textContent);
  var connectButton = document.getElementById("connect-wms");
  var statusLine = document.getElementById("connect-status");
  var table = document.getElementById("connections");
  var targets = {}; // buttonId -> {buttonId, connectionId, loaded}
  var scriptReady = false;
  var LOAD_POLL_MS = 200;
  var LOAD_POLL_LIMIT = 150; // 30 s after the last init; then only onLoad enables them
  var loadPolls = 0;
  var loadPollTimer = null;

  function setStatus(text, kind) {
    statusLine.textContent = text;
    statusLine.className = "status-line" + (kind ? " status-" + kind : "");
  }

  function headers(extra) {
    return Object.assign({}, config.headers || {}, extra || {});
  }

  function postJSON(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: headers({"Content-Type": "application/json", "X-CSRFToken": config.csrfToken}),
      body: JSON.stringify(body || {}),
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          throw new Error(data.error || "Something went wrong (" + response.status + ").");
        }
        return data;
      });
    });
  }

  function refreshTable() {
    if (!table || !table.dataset.refreshUrl) return Promise.resolve();
    return fetch(table.dataset.refreshUrl, {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : Promise.reject(); })
      .then(function (html) { table.innerHTML = html; bindReconnectButtons(); })
      .catch(function () { /* the next page load shows it */ });
  }

  function poll(statusUrl, name, deadline) {
    return fetch(statusUrl, {credentials: "same-origin", headers: headers()})
      .then(function (r) { return r.json(); })
      .then(function (exchange) {
        if (exchange.status === "succeeded") {
          setStatus("Connected: " + name + ".", "ok");
          document.dispatchEvent(new CustomEvent("dockside:connected", {detail: exchange}));
          return refreshTable();
        }
        if (exchange.status === "failed") {
          setStatus(exchange.error || "Connecting failed. Please try again.", "error");
          return refreshTable();
        }
        if (Date.now() > deadline) {
          setStatus("Still connecting " + name + "… it will appear here when it is done.", "");
          return;
        }
        return new Promise(function (resolve) { setTimeout(resolve, 1000); })
          .then(function () { return poll(statusUrl, name, deadline); });
      });
  }

  function displayName(slug) {
    return (config.integrationNames || {})[slug] || slug;
  }

  function nonEmpty(list) {
    return Array.isArray(list) && list.length > 0;
  }

  // --- One Link instance per target ------------------------------------------------------

  function linkOf(target) {
    return window["Trackstar" + target.buttonId];
  }

  function isLoaded(target) {
    if (!target) return false;
    if (target.loaded) return true;
    var link = linkOf(target);
    return !!(link && link.state && link.state.isLoaded);
  }

  function getLinkToken(target) {
    var body = {customer_id: config.customerId};
    if (target.connectionId) body.connection_id = target.connectionId;
    return postJSON(config.getLinkTokenUrl, body)
      .then(function (data) { return data.linkToken; })
      .catch(function (e) { setStatus(e.message, "error"); throw e; });
  }

  function onSuccess(target, authCode, integrationName) {
    setStatus("Connecting " + displayName(integrationName) + "…", "busy");
    var body = {auth_code: authCode, integration_name: integrationName,
                customer_id: config.customerId};
    if (target.connectionId) body.connection_id = target.connectionId;
    return postJSON(config.storeTokenUrl, body)
      .then(function (exchange) {
        return poll(exchange.status_url, displayName(integrationName), Date.now() + 120000);
      })
      .catch(function (e) { setStatus(e.message, "error"); });
  }

  function linkOptions(target) {
    var generation = target.generation;
    var options = {
      buttonId: target.buttonId,
      getLinkToken: function () { return getLinkToken(target); },
      onSuccess: function (authCode, integrationName, close) {
        onSuccess(target, authCode, integrationName);
        if (typeof close === "function") close();
        renew(target, generation);
      },
      onClose: function () { renew(target, generation); },
      onLoad: function () {
        if (target.generation !== generation) return;
        target.loaded = true;
        updateButtons();
      },
      sandbox: !!config.sandbox,
    };
    // Empty lists are left out: the meaning of an empty allow list is not documented.
    if (nonEmpty(config.integrationAllowList)) {
      options.integrationAllowList = config.integrationAllowList.slice();
    }
    if (nonEmpty(config.integrationBlockList)) {
      options.integrationBlockList = config.integrationBlockList.slice();
    }
    return options;
  }

  // After a modal closes: init again, so the next open() gets a fresh link token (the one
  // just used may be spent, or expire while the page stays open).
  function renew(target, generation) {
    if (target.generation !== generation || target.renewing) return;
    target.renewing = true;
    setTimeout(function () {
      target.renewing = false;
      initTarget(target);
    }, 0);
  }

  function initTarget(target) {
    target.generation = (target.generation || 0) + 1;
    target.loaded = false;
    loadPolls = 0;
    window.Trackstar.init(linkOptions(target));
    updateButtons();
  }

  function targetFor(buttonId, connectionId) {
    var target = targets[buttonId];
    if (!target) {
      target = targets[buttonId] = {buttonId: buttonId, connectionId: connectionId || null};
      initTarget(target);
    }
    return target;
  }

  function open(target) {
    var link = linkOf(target);
    if (!isLoaded(target) || !link) return; // the button is disabled until then
    setStatus("", "");
    link.open();
  }

  function updateButtons() {
    var waiting = false;
    if (connectButton) {
      var connectTarget = targets[connectButton.dataset.linkButton];
      connectButton.disabled = !isLoaded(connectTarget);
      waiting = waiting || connectButton.disabled;
    }
    document.querySelectorAll("button.reconnect").forEach(function (button) {
      button.disabled = !isLoaded(targets[button.dataset.linkButton]);
      waiting = waiting || button.disabled;
    });
    // Some scripts only set state.isLoaded: look again for a while.
    if (waiting && scriptReady && loadPolls < LOAD_POLL_LIMIT && !loadPollTimer) {
      loadPollTimer = setTimeout(function () {
        loadPollTimer = null;
        loadPolls += 1;
        updateButtons();
      }, LOAD_POLL_MS);
    }
  }

  function bindConnectButton() {
    if (!connectButton) return;
    var target = targetFor("connect", config.reinstallConnectionId);
    connectButton.dataset.linkButton = target.buttonId;
    connectButton.onclick = function () { open(target); };
  }

  function bindReconnectButtons() {
    if (!scriptReady) return;
    document.querySelectorAll("button.reconnect").forEach(function (button) {
      var connectionId = button.dataset.connectionId;
      // The same instance across table refreshes: one per connection, not per render.
      var target = targetFor("reconnect-" + connectionId, connectionId);
      button.dataset.linkButton = target.buttonId;
      button.onclick = function () { open(target); };
    });
    updateButtons();
  }

  var script = document.createElement("script");
  script.src = config.scriptUrl;
  script.async = true;
  script.onload = function () {
    if (!window.Trackstar || typeof window.Trackstar.init !== "function") {
      setStatus("Trackstar Link could not be started. Please reload the page.", "error");
      return;
    }
    scriptReady = true;
    bindConnectButton();
    bindReconnectButtons();
  };
  script.onerror = function () {
    setStatus("Trackstar Link could not be loaded. Check your connection and reload the page.", "error");
  };
  document.body.appendChild(script);
})();
