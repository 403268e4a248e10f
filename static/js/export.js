// Follows an account export while the worker makes it; reloads the page (with its download link,
// or the reason it failed) when it is finished.
(function () {
  "use strict";
  var panel = document.getElementById("export-progress");
  if (!panel) return;
  var text = document.getElementById("export-status");
  var bar = document.getElementById("export-bar");
  var url = panel.dataset.statusUrl;
  var POLL_MS = 1500;

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("status " + response.status);
        return response.json();
      })
      .then(function (data) {
        if (data.status === "pending" || data.status === "running") {
          text.textContent = data.status === "pending" ? "Queued" : "Being made: " + data.progress + "%";
          bar.value = data.progress;
          window.setTimeout(poll, POLL_MS);
        } else {
          window.location.reload();
        }
      })
      .catch(function () {
        // A dropped request is not fatal: try again a little later.
        window.setTimeout(poll, POLL_MS * 4);
      });
  }

  window.setTimeout(poll, POLL_MS);
})();
