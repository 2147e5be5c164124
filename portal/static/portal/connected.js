// What a page does once connect.js reports a connection (the "dockside:connected" event),
// named by this script tag's data-then: "done" shows #connect-done in place of the button
// (the magic-link page), "reload" reloads the page (staff's connect page). A file, not an
// inline script: the Content-Security-Policy runs no inline script.
(function () {
  "use strict";
  var then = document.currentScript.dataset.then;
  document.addEventListener("dockside:connected", function () {
    if (then === "reload") {
      setTimeout(function () { window.location.reload(); }, 800);
      return;
    }
    document.getElementById("connect-wms").hidden = true;
    document.getElementById("connect-done").hidden = false;
  });
})();
