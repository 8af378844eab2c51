// An element with data-live-url and data-active="true" refreshes itself in place from that
// small JSON endpoint ({"html", "active"}) every few seconds, until it answers that
// nothing is moving any more: the case page's analysis, the registry's evaluations.
(function () {
  "use strict";

  function follow(element) {
    var delay = 3000;

    function poll() {
      var asked = { headers: { Accept: "application/json" }, credentials: "same-origin" };
      fetch(element.dataset.liveUrl, asked)
        .then(function (response) {
          if (!response.ok) { throw new Error("status " + response.status); }
          return response.json();
        })
        .then(function (body) {
          element.innerHTML = body.html;
          element.dataset.active = body.active ? "true" : "false";
          if (body.active) { window.setTimeout(poll, delay); }
        })
        .catch(function () {
          // Back off on errors (server restarting, network blip) rather than hammering.
          delay = Math.min(delay * 2, 60000);
          window.setTimeout(poll, delay);
        });
    }

    window.setTimeout(poll, delay);
  }

  document.querySelectorAll("[data-live-url][data-active=true]").forEach(follow);
})();
