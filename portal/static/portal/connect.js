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
//
// Before Link opens, our own picker asks which WMS (config.integrations): a WMS the customer
// already has (config.existing, or the portal's table) is offered "Reconnect it" first, as
// Link's modal cannot be stopped once credentials are typed. The WMS picked opens an
// instance of its own with integrationAllowList [slug], which skips Link's picker.
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
          var error = new Error(data.error || "Something went wrong (" + response.status + ").");
          error.status = response.status;
          error.retryAfter = parseInt(response.headers.get("Retry-After") || "", 10);
          throw error;
        }
        return data;
      });
    });
  }

  function refreshTable() {
    if (!table || !table.dataset.refreshUrl) return Promise.resolve();
    return fetch(table.dataset.refreshUrl, {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : Promise.reject(); })
      .then(function (html) {
        table.innerHTML = html;
        document.dispatchEvent(new CustomEvent("dockside:table-refreshed", {detail: {by: "connect"}}));
      })
      .catch(function () { /* the next page load shows it */ });
  }

  // Whoever replaced the table (this script, or status.js, which follows the first sync
  // after a connect): its Reconnect buttons are new elements, bound to their Link instance.
  document.addEventListener("dockside:table-refreshed", function () { bindReconnectButtons(); });

  // The page follows an exchange for as long as the server says it is still working (a
  // worker that died mid-exchange is taken up again by the sweep a minute or two later),
  // up to POLL_LIMIT_MS; then it says where the result will appear. A connection that
  // needs a reconnect to finish is followed too: a late connection.created webhook may
  // still finish it. A failed poll (a restart, a blip) is tried again, not shown.
  var POLL_LIMIT_MS = 10 * 60 * 1000;
  var POLL_SLOW_AFTER_MS = 30 * 1000;
  var POLL_PATIENCE_MS = 20 * 1000;
  var pollRound = 0; // a new connect (or a reconnect) stops the poll of the one before

  function follow(statusUrl, name) {
    var round = ++pollRound;
    var started = Date.now();
    var finishShown = false;

    function again() {
      var elapsed = Date.now() - started;
      if (elapsed > POLL_LIMIT_MS) {
        if (!finishShown) {
          setStatus("Still connecting " + name + "… it will appear here when it is done.", "");
        }
        return refreshTable();
      }
      var wait = finishShown || elapsed > POLL_SLOW_AFTER_MS ? 3000 : 1000;
      return new Promise(function (resolve) { setTimeout(resolve, wait); }).then(step);
    }

    function step() {
      if (round !== pollRound) return;
      return fetch(statusUrl, {credentials: "same-origin", headers: headers()})
        .then(function (r) {
          if (r.ok) return r.json();
          if (r.status >= 400 && r.status < 500) {
            // Final (logged out, not this caller's): say so rather than poll for nothing.
            return r.json().catch(function () { return {}; }).then(function (data) {
              return {status: "failed", error: data.error || "Connecting failed (" + r.status + ")."};
            });
          }
          return null;
        })
        .catch(function () { return null; })
        .then(function (exchange) {
          if (round !== pollRound) return;
          if (!exchange) return again();
          if (exchange.status === "succeeded" && exchange.reconnect_to_finish) {
            if (!finishShown) {
              finishShown = true;
              showFinish(exchange);
              refreshTable();
            }
            return again();
          }
          if (exchange.status === "succeeded") {
            var label = (exchange.connection && exchange.connection.label) || name;
            setStatus("Connected: " + label + ".", "ok");
            // status.js follows the row from here: Syncing, then Connected.
            return refreshTable().then(function () {
              document.dispatchEvent(new CustomEvent("dockside:connected", {detail: exchange}));
            });
          }
          if (exchange.status === "failed") {
            setStatus(exchange.error || "Connecting failed. Please try again.", "error");
            return refreshTable();
          }
          if (Date.now() - started > POLL_PATIENCE_MS) {
            setStatus("Still connecting " + name + "… this can take a few minutes.", "busy");
          }
          return again();
        });
    }

    return step();
  }

  // "Almost there": the connection exists at Trackstar, and a reconnect (same connection,
  // same history) finishes it. The button opens the same Link instance as the row's own.
  function showFinish(exchange) {
    setStatus(exchange.message || "Almost there: reconnect to finish.", "busy");
    var ref = exchange.reconnect_connection_id;
    if (!ref) return;
    statusLine.appendChild(document.createTextNode(" "));
    statusLine.appendChild(el("button", {
      type: "button", id: "finish-reconnect", class: "btn small primary", text: "Reconnect",
      onclick: function () {
        reconnect({buttonId: "reconnect-" + ref, ref: String(ref)});
      },
    }));
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
      .then(function (data) {
        // Sent back with the auth code: the server takes a code only with a link token it
        // minted for this customer (and this reconnect).
        target.linkToken = data.linkToken;
        return data.linkToken;
      })
      .catch(function (e) { setStatus(e.message, "error"); throw e; });
  }

  // The auth code is single-use and lives only in this page: a refusal that says "later"
  // (429 with Retry-After, a 502/503, no answer at all) is tried again, a few times, rather
  // than dropping the code. Any other 4xx is final and shown.
  var STORE_TOKEN_TRIES = 5;

  function storeToken(body, attempt) {
    return postJSON(config.storeTokenUrl, body).catch(function (e) {
      var transient = e.status === undefined || e.status === 429 || e.status === 502 ||
        e.status === 503 || e.status === 504;
      if (!transient || attempt + 1 >= STORE_TOKEN_TRIES) throw e;
      var seconds = e.retryAfter > 0 ? Math.min(e.retryAfter, 30) : Math.pow(2, attempt + 1);
      setStatus("Busy; trying again in " + seconds + " s…", "busy");
      return new Promise(function (resolve) { setTimeout(resolve, seconds * 1000); })
        .then(function () { return storeToken(body, attempt + 1); });
    });
  }

  function onSuccess(target, authCode, integrationName) {
    setStatus("Connecting " + displayName(integrationName) + "…", "busy");
    var body = {auth_code: authCode, integration_name: integrationName,
                customer_id: config.customerId};
    if (target.linkToken) body.link_token = target.linkToken;
    if (target.connectionId) body.connection_id = target.connectionId;
    return storeToken(body, 0)
      .then(function (exchange) {
        // The page shows the row as Connecting… while the worker exchanges the code.
        document.dispatchEvent(new CustomEvent("dockside:connecting", {detail: exchange}));
        return follow(exchange.status_url, displayName(integrationName));
      })
      .catch(function (e) { setStatus(e.message, "error"); });
  }

  function linkOptions(target) {
    var generation = target.generation;
    var allowList = target.allowList || config.integrationAllowList;
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
    if (nonEmpty(allowList)) {
      options.integrationAllowList = allowList.slice();
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

  function targetFor(buttonId, connectionId, allowList) {
    var target = targets[buttonId];
    if (!target) {
      target = targets[buttonId] = {buttonId: buttonId, connectionId: connectionId || null,
                                    allowList: allowList || null};
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

  // For an instance made on demand (a WMS picked in our picker): open it once it has loaded.
  function openWhenLoaded(target) {
    var deadline = Date.now() + 30000;
    if (!isLoaded(target)) setStatus("Opening Trackstar Link…", "busy");
    (function check() {
      if (isLoaded(target) && linkOf(target)) return open(target);
      if (Date.now() > deadline) {
        setStatus("Trackstar Link did not start. Please reload the page.", "error");
        return;
      }
      setTimeout(check, 100);
    })();
  }

  // --- Our picker: which WMS, and "Reconnect it" for one the customer already has -------

  var dialog = null;
  var dialogTitle = null;
  var dialogBody = null;

  function usePicker() {
    return !config.reinstallConnectionId && nonEmpty(config.integrations);
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "onclick" || key === "oninput") node[key] = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  // The customer's connections that still exist: the portal's table when the page has one
  // (it is refreshed after each connect), else what the page was given.
  function existingConnections() {
    var rows = table ? table.querySelectorAll("tr[data-connection-id][data-integration]") : null;
    if (!rows) return config.existing || [];
    var found = [];
    rows.forEach(function (row) {
      if (row.dataset.status === "disconnected") return;
      found.push({
        ref: row.dataset.connectionId,
        buttonId: "reconnect-" + row.dataset.connectionId,
        integration: row.dataset.integration,
        label: row.dataset.label || displayName(row.dataset.integration),
        status: row.dataset.status,
      });
    });
    // Oldest first, as the page was given them (the table shows the newest first).
    return found.sort(function (a, b) { return Number(a.ref) - Number(b.ref); });
  }

  var STATUS_NOTES = {
    needs_reconnect: ", and needs reconnecting",
    error: ", and has an error",
    pending: ", and is still connecting",
  };

  function existingOf(slug) {
    return existingConnections().filter(function (c) { return c.integration === slug; });
  }

  function buildDialog() {
    if (dialog) return;
    dialogTitle = el("h2", {id: "wms-picker-title", class: "wms-picker-title", tabindex: "-1"});
    dialogBody = el("div", {class: "wms-picker-body"});
    dialog = el("dialog", {id: "wms-picker", class: "wms-picker",
                           "aria-labelledby": "wms-picker-title"}, [
      el("div", {class: "wms-picker-head"}, [
        dialogTitle,
        el("button", {type: "button", class: "wms-picker-close", "aria-label": "Close",
                      text: "×", onclick: function () { closeDialog(true); }}),
      ]),
      dialogBody,
    ]);
    // Escape closes it (the browser's "cancel"); so does a click on the backdrop.
    dialog.addEventListener("cancel", function (event) {
      event.preventDefault();
      closeDialog(true);
    });
    dialog.addEventListener("click", function (event) {
      if (event.target === dialog) closeDialog(true);
    });
    document.body.appendChild(dialog);
  }

  function showDialog(title, nodes, focus) {
    buildDialog();
    dialogTitle.textContent = title;
    while (dialogBody.firstChild) dialogBody.removeChild(dialogBody.firstChild);
    nodes.forEach(function (node) { if (node) dialogBody.appendChild(node); });
    if (!dialog.open) dialog.showModal();
    (focus || dialogTitle).focus();
  }

  function closeDialog(returnFocus) {
    if (dialog && dialog.open) dialog.close();
    if (returnFocus && connectButton) connectButton.focus();
  }

  function showPicker() {
    var offered = config.integrations;
    var search = null;
    var items = offered.map(function (integration) {
      var have = existingOf(integration.slug).length;
      var button = el("button", {type: "button", class: "wms-option",
                                 "data-integration": integration.slug,
                                 onclick: function () { choose(integration.slug, true); }}, [
        integration.logo ? el("img", {src: integration.logo, alt: "", width: "28", height: "28"})
          : el("span", {class: "wms-logo-blank", "aria-hidden": "true"}),
        el("span", {class: "wms-option-name", text: integration.name}),
        have ? el("span", {class: "wms-have", text: have > 1 ? have + " connected" : "connected"})
          : null,
      ]);
      return el("li", {"data-name": integration.name.toLowerCase()}, [button]);
    });
    var list = el("ul", {class: "wms-options"}, items);
    var nodes = [el("p", {class: "wms-picker-sub",
                          text: "Pick the warehouse system you use. You enter its credentials " +
                                "next, in Trackstar's window."})];
    if (offered.length > 8) {
      var empty = el("p", {class: "wms-picker-sub", text: "No WMS by that name.", hidden: ""});
      search = el("input", {type: "search", id: "wms-picker-search", autocomplete: "off",
                            oninput: function () {
                              var q = search.value.trim().toLowerCase();
                              var shown = 0;
                              items.forEach(function (li) {
                                li.hidden = q && li.dataset.name.indexOf(q) === -1;
                                if (!li.hidden) shown += 1;
                              });
                              empty.hidden = shown > 0;
                            }});
      nodes.push(el("label", {for: "wms-picker-search", class: "wms-picker-label",
                              text: "Find your WMS"}));
      nodes.push(search);
      nodes.push(empty);
    }
    nodes.push(list);
    showDialog("Which WMS do you use?", nodes, search || items[0].firstChild);
  }

  // A portal member may be allowed to connect but not to reconnect (the server refuses it):
  // then the dialog only says what is already connected and who can reconnect it.
  function mayReconnect() {
    return config.canReconnect !== false;
  }

  function choose(slug, fromPicker) {
    var existing = existingOf(slug);
    if (!existing.length) return connectNew(slug);
    var name = displayName(slug);
    var names = existing.map(function (c) { return "“" + c.label + "”"; }).join(", ");
    var actions = (mayReconnect() ? existing : []).map(function (connection) {
      var words = existing.length === 1 ? "Reconnect it" : "Reconnect " + connection.label;
      return el("button", {type: "button", class: "btn primary wms-choice",
                           onclick: function () { reconnect(connection); }}, [
        el("span", {text: words}),
      ]);
    });
    actions.push(el("button", {type: "button", class: "btn wms-choice",
                               onclick: function () { connectNew(slug); },
                               text: "It is a different " + name + " account"}));
    actions.push(el("button", {type: "button", class: "btn link wms-choice",
                               onclick: fromPicker ? showPicker : function () { closeDialog(true); },
                               text: fromPicker ? "Back" : "Cancel"}));
    var one = existing.length === 1;
    var status = one ? (STATUS_NOTES[existing[0].status] || "") : "";
    var advice = !mayReconnect()
      ? (one ? names + " is already connected" + status + "." : "Already connected: " + names +
         ".") + " If it stopped working or its credentials changed, ask an owner of your " +
        "account to reconnect it: it keeps its history, and nothing is duplicated."
      : one
        ? names + " is already connected" + status + ". If its credentials changed or it " +
          "stopped working, reconnect it: it keeps its history, and nothing is duplicated."
        : "Already connected: " + names + ". If one of them stopped working or its " +
          "credentials changed, reconnect that one: it keeps its history, and nothing is " +
          "duplicated.";
    showDialog(
      one ? "You already have " + name + " connected"
        : "You already have " + existing.length + " " + name + " connections",
      [
        el("p", {text: advice}),
        el("p", {class: "wms-picker-sub", text: "Connect again only for another " + name +
                                                " account, such as a second warehouse."}),
        el("div", {class: "wms-choices"}, actions),
      ],
      actions[0]
    );
  }

  function connectNew(slug) {
    closeDialog(false);
    openWhenLoaded(targetFor("connect-" + slug, null, [slug]));
  }

  function reconnect(connection) {
    closeDialog(false);
    openWhenLoaded(targetFor(connection.buttonId, connection.ref));
  }

  function startConnect() {
    var offered = config.integrations;
    setStatus("", "");
    if (offered.length === 1) return choose(offered[0].slug, false);
    showPicker();
  }

  function updateButtons() {
    var waiting = false;
    if (connectButton && usePicker()) {
      connectButton.disabled = !scriptReady; // each WMS's instance is made when picked
    } else if (connectButton) {
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
    if (usePicker()) {
      connectButton.setAttribute("aria-haspopup", "dialog");
      connectButton.onclick = startConnect;
      updateButtons();
      return;
    }
    // A reinstall link, or no catalog (Trackstar unreachable): Link's own picker.
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
