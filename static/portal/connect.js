// Drives Trackstar Link on a Dockside page (portal, magic link, admin).
// Config comes from <script id="link-config" type="application/json">: the Link script
// URL, our two endpoints and the CSRF token. The auth code goes to our backend at once;
// the exchange for an access token happens in a worker, and this page polls for it.
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("link-config").textContent);
  var connectButton = document.getElementById("connect-wms");
  var statusLine = document.getElementById("connect-status");
  var table = document.getElementById("connections");
  var reinstallId = config.reinstallConnectionId || null;

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

  function onSuccess(authCode, integrationName) {
    setStatus("Connecting " + displayName(integrationName) + "…", "busy");
    var body = {auth_code: authCode, integration_name: integrationName,
                customer_id: config.customerId};
    if (reinstallId) body.connection_id = reinstallId;
    return postJSON(config.storeTokenUrl, body)
      .then(function (exchange) {
        return poll(exchange.status_url, displayName(integrationName), Date.now() + 120000);
      })
      .catch(function (e) { setStatus(e.message, "error"); });
  }

  function getLinkToken() {
    var body = {customer_id: config.customerId};
    if (reinstallId) body.connection_id = reinstallId;
    return postJSON(config.getLinkTokenUrl, body)
      .then(function (data) { return data.linkToken; })
      .catch(function (e) { setStatus(e.message, "error"); throw e; });
  }

  function open(connectionId) {
    reinstallId = connectionId || config.reinstallConnectionId || null;
    setStatus("", "");
    window.Trackstar.open();
  }

  function bindReconnectButtons() {
    document.querySelectorAll("button.reconnect").forEach(function (button) {
      button.disabled = !(window.Trackstar && window.Trackstar.state && window.Trackstar.state.isLoaded);
      button.onclick = function () { open(button.dataset.connectionId); };
    });
  }

  var script = document.createElement("script");
  script.src = config.scriptUrl;
  script.async = true;
  script.onload = function () {
    window.Trackstar.init({
      getLinkToken: getLinkToken,
      onSuccess: onSuccess,
      onClose: function () {},
      onLoad: function () {},
      integrationAllowList: config.integrationAllowList,
      sandbox: config.sandbox,
    });
    if (connectButton) {
      connectButton.disabled = false;
      connectButton.onclick = function () { open(null); };
    }
    bindReconnectButtons();
  };
  script.onerror = function () {
    setStatus("Trackstar Link could not be loaded. Check your connection and reload the page.", "error");
  };
  document.body.appendChild(script);
})();
