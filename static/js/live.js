// An element with data-live-url and data-active="true" refreshes itself in place from that
// small JSON endpoint ({"html", "active"}) every few seconds, until it answers that
// nothing is moving any more: the case page's analysis, the registry's evaluations.
(function () {
  "use strict";

  function follow(element) {
    var delay = 3000;

    function poll() {
      // X-Live-Refresh: a refresh is not the person doing something, so it does not keep
      // an idle session alive; once the session has timed out (401) the page reloads and
      // that navigation lands on the login page, which says why.
      var asked = {
        headers: { Accept: "application/json", "X-Live-Refresh": "1" },
        credentials: "same-origin",
      };
      fetch(element.dataset.liveUrl, asked)
        .then(function (response) {
          if (response.status === 401) { window.location.reload(); return new Promise(function () {}); }
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
