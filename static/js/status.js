// Polls the composition's status while the worker runs; reloads the page when it is finished.
(function () {
  "use strict";
  var panel = document.getElementById("status");
  if (!panel) return;
  var text = document.getElementById("status-text");
  var bar = document.getElementById("progress-bar");
  var url = panel.dataset.statusUrl;
  // Often at first (a short piece is done in a few seconds), then less often: a long piece's page
  // left open asks about once every 3 s.
  var POLL_MS = 700, MAX_POLL_MS = 3000, every = POLL_MS;

  function label(data) {
    if (data.status === "pending") return "Queued";
    // The worker's own words: "Loading the model" before the first note, then "Generating n%".
    if (data.status === "generating") return data.message || "Generating " + data.progress + "%";
    if (data.status === "rendering") return "Rendering";
    if (data.status === "failed") return "Failed: " + (data.error || "unknown reason");
    if (data.status === "cancelled") return "Cancelled";
    return "Done";
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("status " + response.status);
        return response.json();
      })
      .then(function (data) {
        text.textContent = label(data);
        bar.style.width = data.progress + "%";
        bar.parentElement.setAttribute("aria-valuenow", data.progress);
        if (data.status === "done" || data.status === "failed" || data.status === "cancelled") {
          // The server renders the player (or the retry button) for finished pieces.
          window.location.reload();
        } else {
          every = Math.min(MAX_POLL_MS, every * 1.25);
          window.setTimeout(poll, every);
        }
      })
      .catch(function () {
        // A dropped request is not fatal: try again a little later.
        window.setTimeout(poll, POLL_MS * 4);
      });
  }

  window.setTimeout(poll, POLL_MS);
})();
