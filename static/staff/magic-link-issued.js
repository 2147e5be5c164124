// The magic link issued page: select the URL on a click, copy it with the Copy button.
(function () {
  "use strict";
  var field = document.getElementById("magic-link-url");
  var copy = document.getElementById("copy-magic-link");
  if (!field || !copy) return;
  field.addEventListener("click", function () { field.select(); });
  copy.addEventListener("click", function () {
    field.select();
    var done = function () { document.getElementById("copy-done").hidden = false; };
    if (navigator.clipboard) {
      navigator.clipboard.writeText(field.value).then(done, function () {
        document.execCommand("copy");
        done();
      });
    } else {
      document.execCommand("copy");
      done();
    }
  });
})();
