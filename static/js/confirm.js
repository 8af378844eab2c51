// A form with data-confirm="question" asks before it is sent (an irreversible step).
// Kept out of the markup (no inline handlers) so the pages can run under a strict CSP.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
})();
