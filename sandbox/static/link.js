/*
 * Emulated Trackstar Link (main.js) served by the Dockside sandbox.
 *
 * Same global protocol as the real script (API.md §2): window.Trackstar.init(config),
 * open(opts), close(), state.isLoaded, and window["Trackstar" + buttonId] per button.
 *
 * Pessimistic where the real script is undocumented (API.md §10): an instance calls
 * getLinkToken once, on its first open(), and reuses that token for every later open()
 * until it is init()-ed again. A page that wants a different token (another connection to
 * reinstall) must use another buttonId or re-init; one that does not is caught here.
 *
 * The modal talks only to the sandbox that served this file (found from
 * document.currentScript), never to the page's own host.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var ORIGIN = script && script.src ? new URL(script.src).origin : window.location.origin;
  var STYLE_ID = "trackstar-link-style";
  var CSS = [
    ".tsl-root{all:initial;position:fixed;inset:0;z-index:2147483000;display:flex;",
    "align-items:center;justify-content:center;background:rgba(17,24,39,.55);",
    "font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Arial,sans-serif;",
    "font-size:14px;line-height:1.4;color:#111827}",
    ".tsl-root *{box-sizing:border-box;font-family:inherit;letter-spacing:normal;text-transform:none}",
    ".tsl-modal{background:#fff;border-radius:12px;width:min(420px,92vw);max-height:88vh;",
    "overflow:auto;padding:24px;box-shadow:0 20px 50px rgba(0,0,0,.3);position:relative}",
    ".tsl-title{margin:0 0 4px;font-size:18px;font-weight:600;color:#111827;padding:0;background:none}",
    ".tsl-sub{margin:0 0 16px;color:#6b7280;font-size:13px}",
    ".tsl-close{position:absolute;top:12px;right:12px;border:0;background:none;font-size:22px;",
    "cursor:pointer;color:#6b7280;padding:4px 8px;line-height:1}",
    ".tsl-list{display:grid;gap:8px;margin:0;padding:0}",
    ".tsl-option{display:flex;align-items:center;gap:12px;width:100%;padding:10px 12px;",
    "border:1px solid #e5e7eb;border-radius:8px;background:#fff;cursor:pointer;font-size:15px;",
    "color:#111827;text-align:left;margin:0;height:auto;box-shadow:none}",
    ".tsl-option:hover,.tsl-option:focus{border-color:#2563eb;background:#eff6ff;outline:none}",
    ".tsl-option img{width:28px;height:28px;border-radius:6px;flex:none}",
    ".tsl-field{display:block;margin:0 0 12px}",
    ".tsl-field label{display:block;font-weight:500;margin:0 0 4px;color:#374151;float:none;",
    "width:auto;padding:0}",
    ".tsl-field input{display:block;width:100%;padding:8px 10px;border:1px solid #d1d5db;",
    "border-radius:6px;font-size:14px;background:#fff;color:#111827;height:auto;margin:0}",
    ".tsl-actions{display:flex;gap:8px;justify-content:flex-end;margin-top:16px}",
    ".tsl-btn{padding:8px 16px;border-radius:6px;border:1px solid #d1d5db;background:#fff;",
    "cursor:pointer;font-size:14px;color:#111827;height:auto;margin:0;text-transform:none}",
    ".tsl-primary{background:#2563eb;border-color:#2563eb;color:#fff}",
    ".tsl-primary[disabled]{opacity:.6;cursor:wait}",
    ".tsl-alert{margin:0 0 12px;padding:10px 12px;border-radius:6px;background:#fef2f2;",
    "color:#991b1b;border:1px solid #fecaca}",
    ".tsl-loading{color:#6b7280;padding:12px 0}",
  ].join("");

  function injectStyle() {
    if (document.getElementById(STYLE_ID)) return;
    var style = document.createElement("style");
    style.id = STYLE_ID;
    style.textContent = CSS;
    document.head.appendChild(style);
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "onclick" || key === "onsubmit") node[key] = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) {
      if (child) node.appendChild(child);
    });
    return node;
  }

  function nonEmpty(list) {
    return Array.isArray(list) && list.length > 0;
  }

  function filterIntegrations(all, config) {
    var list = all.filter(function (i) {
      return i.integration_name !== "sandbox" || config.sandbox;
    });
    var allow = config.integrationAllowList;
    var block = config.integrationBlockList;
    // Allow and block lists are exclusive: with both set, everything shows (API.md §2).
    if (nonEmpty(allow) && nonEmpty(block)) return list;
    if (nonEmpty(allow)) {
      return list.filter(function (i) {
        return allow.indexOf(i.integration_name) !== -1 || i.integration_name === "sandbox";
      });
    }
    if (nonEmpty(block)) {
      return list.filter(function (i) {
        return block.indexOf(i.integration_name) === -1;
      });
    }
    return list;
  }

  function Link(name) {
    this.name = name;
    this.config = {};
    this.state = { isLoaded: false, isOpen: false };
    this._root = null;
    this._linkToken = null; // fetched on the first open() after init(), then kept
    this._openToken = null; // the token of the modal now open
  }

  Link.prototype.init = function (config) {
    config = config || {};
    if (config.buttonId && this.name === "Trackstar") {
      var key = "Trackstar" + config.buttonId;
      if (!(window[key] instanceof Link)) window[key] = new Link(key);
      window[key].init(Object.assign({}, config, { buttonId: null }));
      window[key].config.buttonId = config.buttonId;
      return window[key];
    }
    this.config = config;
    this._linkToken = null; // a new init() asks getLinkToken again on the next open()
    this.state.isLoaded = true;
    if (typeof config.onLoad === "function") config.onLoad();
    return this;
  };

  Link.prototype.open = function (opts) {
    var self = this;
    opts = opts || {};
    if (!self.state.isLoaded) {
      console.error("Trackstar Link: call init() before open().");
      return;
    }
    if (self.state.isOpen) return;
    if (typeof self.config.getLinkToken !== "function") {
      console.error("Trackstar Link: getLinkToken is required.");
      return;
    }
    injectStyle();
    self.state.isOpen = true;
    var body = el("div", { class: "tsl-body" }, [
      el("p", { class: "tsl-loading", text: "Loading…" }),
    ]);
    var modal = el(
      "div",
      { class: "tsl-modal", role: "dialog", "aria-modal": "true", "aria-labelledby": "tsl-title" },
      [
        el("button", {
          type: "button",
          class: "tsl-close",
          "aria-label": "Close",
          text: "×",
          onclick: function () {
            self.close();
          },
        }),
        body,
      ]
    );
    self._root = el("div", { class: "tsl-root", id: "trackstar-link", "data-link": self.name }, [
      modal,
    ]);
    self._body = body;
    document.body.appendChild(self._root);

    var config = self.config;
    Promise.resolve()
      .then(function () {
        if (self._linkToken) return self._linkToken; // reused: see the header comment
        return Promise.resolve(config.getLinkToken()).then(function (linkToken) {
          // Kept only if no init() came in between; a failed call is not kept either.
          if (self.config === config && linkToken) self._linkToken = linkToken;
          return linkToken;
        });
      })
      .then(function (linkToken) {
        self._openToken = linkToken;
        return fetch(
          ORIGIN + "/_sandbox/link/integrations?link_token=" + encodeURIComponent(linkToken)
        ).then(function (response) {
          return response.json().then(function (payload) {
            if (!response.ok) throw new Error(payload.error || "Could not load integrations.");
            return payload;
          });
        });
      })
      .then(function (payload) {
        if (!self.state.isOpen) return;
        var byName = {};
        payload.integrations.forEach(function (i) {
          byName[i.integration_name] = i;
        });
        if (payload.reinstall && byName[payload.reinstall]) {
          self._showForm(byName[payload.reinstall], false); // reinstall: straight to the form
          return;
        }
        if (opts.integrationId && byName[opts.integrationId]) {
          self._showForm(byName[opts.integrationId], false);
          return;
        }
        var list = filterIntegrations(payload.integrations, self.config);
        var allow = self.config.integrationAllowList;
        if (nonEmpty(allow) && allow.length === 1 && !nonEmpty(self.config.integrationBlockList)) {
          var only = byName[allow[0]];
          if (only) {
            self._showForm(only, false); // a one-item allow list skips the picker
            return;
          }
        }
        self._showPicker(list);
      })
      .catch(function (error) {
        if (!self.state.isOpen) return;
        self._render([
          el("h2", { class: "tsl-title", id: "tsl-title", text: "Something went wrong" }),
          el("div", { class: "tsl-alert", role: "alert", text: error.message || String(error) }),
        ]);
      });
  };

  Link.prototype._render = function (nodes) {
    var body = this._body;
    while (body.firstChild) body.removeChild(body.firstChild);
    nodes.forEach(function (node) {
      if (node) body.appendChild(node);
    });
  };

  Link.prototype._showPicker = function (list) {
    var self = this;
    self._render([
      el("h2", { class: "tsl-title", id: "tsl-title", text: "Connect your warehouse" }),
      el("p", { class: "tsl-sub", text: "Choose the WMS you use." }),
      el(
        "div",
        { class: "tsl-list", role: "list" },
        list.map(function (integration) {
          return el(
            "button",
            {
              type: "button",
              class: "tsl-option",
              "data-integration": integration.integration_name,
              onclick: function () {
                self._showForm(integration, true);
              },
            },
            [
              el("img", { src: integration.logo_url, alt: "" }),
              el("span", { text: integration.display_name }),
            ]
          );
        })
      ),
    ]);
  };

  Link.prototype._showForm = function (integration, canGoBack) {
    var self = this;
    var alertBox = el("div", { class: "tsl-alert-slot" });
    var submit = el("button", { type: "submit", class: "tsl-btn tsl-primary", text: "Connect" });
    var fields = integration.fields.map(function (field) {
      var id = "tsl-field-" + field.name;
      var input = el("input", {
        id: id,
        name: field.name,
        type: field.secret ? "password" : "text",
        autocomplete: field.secret ? "new-password" : "off",
      });
      if (field.required) input.setAttribute("required", "");
      return el("div", { class: "tsl-field" }, [
        el("label", { for: id, text: field.label }),
        input,
      ]);
    });
    var form = el(
      "form",
      {
        class: "tsl-form",
        "data-integration": integration.integration_name,
        onsubmit: function (event) {
          event.preventDefault();
          var credentials = {};
          integration.fields.forEach(function (field) {
            credentials[field.name] = form.elements[field.name].value;
          });
          submit.disabled = true;
          submit.textContent = "Connecting…";
          self
            ._authorize(integration.integration_name, credentials)
            .then(function (result) {
              var close = function () {
                self.close();
              };
              if (typeof self.config.onSuccess === "function") {
                self.config.onSuccess(result.auth_code, integration.integration_name, close);
              }
              self.close();
            })
            .catch(function (error) {
              submit.disabled = false;
              submit.textContent = "Connect";
              while (alertBox.firstChild) alertBox.removeChild(alertBox.firstChild);
              alertBox.appendChild(
                el("div", { class: "tsl-alert", role: "alert", text: error.message })
              );
            });
        },
      },
      [alertBox].concat(fields).concat([
        el("div", { class: "tsl-actions" }, [
          canGoBack
            ? el("button", {
                type: "button",
                class: "tsl-btn",
                text: "Back",
                onclick: function () {
                  self._reopenPicker();
                },
              })
            : null,
          submit,
        ]),
      ])
    );
    self._render([
      el("h2", {
        class: "tsl-title",
        id: "tsl-title",
        text: "Connect to " + integration.display_name,
      }),
      el("p", {
        class: "tsl-sub",
        text: "Enter the credentials Trackstar should use to read your " +
          integration.display_name + " account.",
      }),
      form,
    ]);
    var first = form.querySelector("input");
    if (first) first.focus();
  };

  Link.prototype._reopenPicker = function () {
    var self = this;
    fetch(ORIGIN + "/_sandbox/link/integrations?link_token=" + encodeURIComponent(self._openToken))
      .then(function (response) {
        return response.json();
      })
      .then(function (payload) {
        self._showPicker(filterIntegrations(payload.integrations || [], self.config));
      });
  };

  Link.prototype._authorize = function (integrationName, credentials) {
    return fetch(ORIGIN + "/_sandbox/link/authorize", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        link_token: this._openToken,
        integration_name: integrationName,
        credentials: credentials,
      }),
    }).then(function (response) {
      return response.json().then(function (payload) {
        if (!response.ok) throw new Error(payload.error || "Connection failed.");
        return payload;
      });
    });
  };

  Link.prototype.close = function () {
    if (!this.state.isOpen) return;
    this.state.isOpen = false;
    if (this._root && this._root.parentNode) this._root.parentNode.removeChild(this._root);
    this._root = null;
    if (typeof this.config.onClose === "function") this.config.onClose();
  };

  if (!(window.Trackstar instanceof Link)) window.Trackstar = new Link("Trackstar");
  // Loaded means the script is ready; init() supplies the callbacks.
  window.Trackstar.state.isLoaded = true;
})();
