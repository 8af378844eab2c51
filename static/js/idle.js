// A page left open on a shared ward computer: a minute before the session's idle timeout
// (data-idle-timeout on <body>, seconds) a warning offers to stay; at the timeout the page
// reloads, which logs the session out on the server and shows the login page instead of
// the patient's record. Any page the person opens starts the count again.
(function () {
  "use strict";

  var timeout = parseInt(document.body.dataset.idleTimeout || "0", 10);
  if (!timeout) { return; }
  var warning = document.getElementById("idle-warning");
  var stay = document.getElementById("idle-stay");
  var warnTimer, endTimer;

  function start() {
    window.clearTimeout(warnTimer);
    window.clearTimeout(endTimer);
    if (warning) { warning.hidden = true; }
    if (timeout > 90 && warning) {
      warnTimer = window.setTimeout(function () { warning.hidden = false; }, (timeout - 60) * 1000);
    }
    // A few seconds past the server's limit, so that the reload finds the session ended.
    endTimer = window.setTimeout(function () { window.location.reload(); }, (timeout + 5) * 1000);
  }

  if (stay) {
    stay.addEventListener("click", function () {
      // An ordinary request (not a background refresh): it counts as activity.
      fetch(document.body.dataset.keepaliveUrl, { credentials: "same-origin" })
        .then(function (response) {
          if (response.ok && !response.redirected) { start(); } else { window.location.reload(); }
        });
    });
  }
  start();
})();
