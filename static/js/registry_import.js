// Upload a model artifact with a progress bar. Without this script the form posts
// normally; with it, a refusal shows in place and the chosen file stays chosen.
(function () {
  "use strict";
  var form = document.querySelector("form[data-import]");
  if (!form) { return; }
  var input = form.querySelector("input[type=file]");
  var progress = form.querySelector("[data-progress]");
  var bar = progress.querySelector("progress");
  var label = progress.querySelector("[data-progress-label]");
  var errors = form.querySelector("[data-errors]");
  var button = form.querySelector("button[type=submit]");

  function showErrors(messages) {
    errors.innerHTML = "";
    messages.forEach(function (message) {
      var item = document.createElement("li");
      item.textContent = message;
      errors.appendChild(item);
    });
    errors.hidden = messages.length === 0;
  }

  function done(messages) {
    progress.hidden = true;
    button.disabled = false;
    showErrors(messages);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!input.files.length) {
      showErrors(["Choose the zipped artifact to import."]);
      return;
    }
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action || window.location.href);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) { return; }
      var percent = Math.round((100 * e.loaded) / e.total);
      bar.value = percent;
      label.textContent = percent < 100 ? "Uploading… " + percent + " %" : "Uploaded; checking the artifact…";
    });
    xhr.addEventListener("load", function () {
      var body = {};
      try { body = JSON.parse(xhr.responseText); } catch (ignored) { body = {}; }
      if (body.redirect) {
        window.location.assign(body.redirect);
        return;
      }
      var messages = [];
      Object.keys(body.errors || {}).forEach(function (field) {
        body.errors[field].forEach(function (error) { messages.push(error.message); });
      });
      if (!messages.length) {
        messages.push(xhr.status === 413
          ? "The file is larger than the server accepts; nothing was imported."
          : "The import failed (" + xhr.status + "); nothing was imported. Please try again.");
      }
      done(messages);
    });
    xhr.addEventListener("error", function () {
      done(["The connection failed; nothing was imported. Please try again."]);
    });
    showErrors([]);
    bar.value = 0;
    label.textContent = "Uploading…";
    progress.hidden = false;
    button.disabled = true;
    xhr.send(new FormData(form));
  });
})();
