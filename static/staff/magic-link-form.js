// The "Issue a magic link" form: the "Reconnect an existing connection" list follows the
// chosen customer. The server offers (and accepts) only that customer's connections.
(function () {
  "use strict";
  var customer = document.getElementById("id_customer");
  var reconnect = document.getElementById("id_reinstall_connection");
  if (!customer || !reconnect) return;
  var url = customer.dataset.reconnectChoicesUrl;
  var noneLabel = reconnect.options.length ? reconnect.options[0].textContent : "";

  function fill(connections, keep) {
    while (reconnect.options.length) reconnect.remove(0);
    reconnect.add(new Option(noneLabel, ""));
    connections.forEach(function (c) {
      reconnect.add(new Option(c.name, String(c.id), false, String(c.id) === keep));
    });
    reconnect.disabled = false;
  }

  customer.addEventListener("change", function () {
    var keep = reconnect.value;
    if (!customer.value) {
      fill([], "");
      return;
    }
    reconnect.disabled = true;
    fetch(url + "?customer=" + encodeURIComponent(customer.value), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (response) {
        return response.ok ? response.json() : { connections: [] };
      })
      .then(function (data) {
        fill(data.connections || [], keep);
      })
      .catch(function () {
        fill([], "");
      });
  });
})();
