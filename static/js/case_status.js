// While workers may still change a case, refresh its status, images and
// predictions in place from the case's small status endpoint.
(function () {
  "use strict";
  var section = document.getElementById("analysis");
  if (!section || section.dataset.active !== "true") { return; }
  var url = section.dataset.statusUrl;
  var delay = 3000;

  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("status " + response.status); }
        return response.json();
      })
      .then(function (body) {
        section.innerHTML = body.html;
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
