// What the pages once did with inline handlers and style= attributes, which the
// Content-Security-Policy forbids (no inline script or style): markup says what it wants
// with data-* attributes, and this file does it.
//   data-print              a click prints the page
//   data-autosubmit         a change sends the control's form
//   data-width="42%"        the element's width (probability bars)
//   data-bar="0.42"         the --w custom property (inline bars)
//   data-shade="0.42"       the --shade custom property (confusion-matrix cells)
// Parts of a page that live.js replaces get the same treatment when they arrive.
(function () {
  "use strict";
  var PROPERTIES = { width: "width", bar: "--w", shade: "--shade" };

  function styleWithin(root) {
    Object.keys(PROPERTIES).forEach(function (name) {
      var selector = "[data-" + name + "]";
      var found = Array.prototype.slice.call(root.querySelectorAll(selector));
      if (root.matches && root.matches(selector)) {
        found.push(root);
      }
      found.forEach(function (element) {
        element.style.setProperty(PROPERTIES[name], element.getAttribute("data-" + name));
      });
    });
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-print]")) {
      window.print();
    }
  });
  document.addEventListener("change", function (event) {
    var control = event.target;
    if (control.hasAttribute && control.hasAttribute("data-autosubmit") && control.form) {
      control.form.submit();
    }
  });

  function start() {
    styleWithin(document);
    new MutationObserver(function (changes) {
      changes.forEach(function (change) {
        change.addedNodes.forEach(function (node) {
          if (node.nodeType === Node.ELEMENT_NODE) {
            styleWithin(node);
          }
        });
      });
    }).observe(document.body, { childList: true, subtree: true });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
