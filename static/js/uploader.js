// Drag-and-drop image picking with an upload progress bar. Without this script
// the same forms still post normally; with it, errors show without a reload.
(function () {
  "use strict";

  function formatSize(bytes) {
    return bytes < 1048576 ? Math.round(bytes / 1024) + " KB" : (bytes / 1048576).toFixed(1) + " MB";
  }

  function showErrors(form, errors) {
    form.querySelectorAll("[data-errors], [data-errors-for]").forEach(function (list) {
      list.innerHTML = "";
    });
    Object.keys(errors).forEach(function (field) {
      var list = form.querySelector('[data-errors-for="' + field + '"]') || form.querySelector("[data-errors]");
      errors[field].forEach(function (error) {
        var item = document.createElement("li");
        item.textContent = error.message;
        list.appendChild(item);
      });
    });
  }

  function setUp(form) {
    var zone = form.querySelector("[data-dropzone]");
    var input = zone.querySelector("input[type=file]");
    var listing = zone.querySelector("[data-file-list]");
    var progress = form.querySelector("[data-progress]");
    var button = form.querySelector("button[type=submit]");
    var files = [];
    // The script keeps the chosen files itself and empties the input after each choice,
    // so the browser's own "required" check would always refuse; the submit handler
    // checks instead (and the server checks again).
    var mustChoose = input.required;
    input.required = false;

    function render() {
      listing.innerHTML = "";
      files.forEach(function (file, index) {
        var item = document.createElement("li");
        item.textContent = file.name + " (" + formatSize(file.size) + ") ";
        var remove = document.createElement("button");
        remove.type = "button";
        remove.className = "link";
        remove.textContent = "remove";
        remove.addEventListener("click", function () {
          files.splice(index, 1);
          render();
        });
        item.appendChild(remove);
        listing.appendChild(item);
      });
    }

    function add(list) {
      Array.prototype.forEach.call(list, function (file) { files.push(file); });
      render();
    }

    input.addEventListener("change", function () {
      add(input.files);
      input.value = "";
    });
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) {
        event.preventDefault();
        zone.classList.add("over");
      });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function (event) {
        event.preventDefault();
        zone.classList.remove("over");
      });
    });
    zone.addEventListener("drop", function (event) { add(event.dataTransfer.files); });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (mustChoose && files.length === 0) {
        showErrors(form, { __all__: [{ message: "Choose at least one image." }] });
        return;
      }
      var data = new FormData(form);
      data.delete(input.name);
      files.forEach(function (file) { data.append(input.name, file, file.name); });
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action || window.location.href);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) { progress.value = Math.round((100 * e.loaded) / e.total); }
      });
      xhr.addEventListener("load", function () {
        var body = {};
        try { body = JSON.parse(xhr.responseText); } catch (ignored) { body = {}; }
        if (body.redirect) {
          window.location.assign(body.redirect);
          return;
        }
        progress.hidden = true;
        button.disabled = false;
        showErrors(form, body.errors || { __all__: [{ message: "Upload failed (" + xhr.status + "). Please try again." }] });
      });
      xhr.addEventListener("error", function () {
        progress.hidden = true;
        button.disabled = false;
        showErrors(form, { __all__: [{ message: "The connection failed; nothing was saved. Please try again." }] });
      });
      progress.value = 0;
      progress.hidden = false;
      button.disabled = true;
      xhr.send(data);
    });
  }

  function togglePatient(form) {
    var select = form.querySelector("select[name=patient]");
    var fields = form.querySelector("[data-new-patient]");
    if (!select || !fields) { return; }
    function update() { fields.hidden = select.value !== ""; }
    select.addEventListener("change", update);
    update();
  }

  document.querySelectorAll("form[data-uploader]").forEach(function (form) {
    setUp(form);
    togglePatient(form);
  });
})();
