// A form with data-confirm="question" is sent only once the user agrees to the question
// (CSP-friendly: no inline handlers). Listening on the document also covers forms that
// the case page's status poller re-renders.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) { return; }
    if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
  });
})();
