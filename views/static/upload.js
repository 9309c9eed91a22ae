// Progressive enhancement of the listing page: uploads go one PUT per file
// with a progress bar each; without JavaScript the form posts multipart.
(function () {
  "use strict";
  var form = document.getElementById("upload");
  if (!form || !window.XMLHttpRequest) return;

  function fileUrl(name) {
    return form.getAttribute("action") + name.split("/").map(encodeURIComponent).join("/");
  }

  function upload(file, list) {
    return new Promise(function (resolve) {
      var item = document.createElement("li");
      var bar = document.createElement("progress");
      var label = document.createElement("span");
      bar.max = 100;
      bar.value = 0;
      item.className = "uploading";
      item.dataset.name = file.name;
      label.textContent = " " + file.name;
      item.appendChild(bar);
      item.appendChild(label);
      list.appendChild(item);

      var xhr = new XMLHttpRequest();
      xhr.open("PUT", fileUrl(file.name));
      xhr.setRequestHeader("Accept", "application/json");
      var csrf = document.querySelector('meta[name="csrf-token"]');
      if (csrf) xhr.setRequestHeader("X-CSRF-Token", csrf.content);
      if (file.type) xhr.setRequestHeader("Content-Type", file.type);
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
      };
      xhr.onload = function () {
        if (xhr.status === 200 || xhr.status === 201) {
          bar.value = 100;
          item.className = "done";
          label.textContent = " " + file.name + " — done";
        } else {
          var message = xhr.statusText;
          try { message = JSON.parse(xhr.responseText).error; } catch (e) { /* not JSON */ }
          item.className = "failed";
          label.textContent = " " + file.name + " — " + message;
        }
        resolve(xhr.status < 300);
      };
      xhr.onerror = function () {
        item.className = "failed";
        label.textContent = " " + file.name + " — connection failed";
        resolve(false);
      };
      xhr.send(file);
    });
  }

  form.addEventListener("submit", function (event) {
    var input = form.querySelector("input[type=file]");
    if (!input.files.length) return;
    event.preventDefault();
    var list = document.getElementById("progress");
    var files = Array.prototype.slice.call(input.files);
    Promise.all(files.map(function (f) { return upload(f, list); })).then(function (results) {
      if (results.every(Boolean)) window.location.reload();
    });
  });
})();
