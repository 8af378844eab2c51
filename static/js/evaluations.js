// While a local evaluation of this version is queued, refresh the evaluations table in
// place from the version's small evaluations endpoint; stop once none is pending.
(function () {
  "use strict";
  var panel = document.querySelector("[data-evaluations-panel]");
  if (!panel || panel.dataset.active !== "true") { return; }
  var url = panel.dataset.url;
  var delay = 3000;

  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("status " + response.status); }
        return response.json();
      })
      .then(function (body) {
        panel.innerHTML = body.html;
        panel.dataset.active = body.active ? "true" : "false";
        if (body.active) { window.setTimeout(poll, delay); }
      })
      .catch(function () {
        // Back off on errors (server restarting, network blip) rather than hammering.
        delay = Math.min(delay * 2, 60000);
        window.setTimeout(poll, delay);
      });
  }

  window.setTimeout(poll, delay);
})();
