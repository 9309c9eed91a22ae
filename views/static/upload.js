// Progressive enhancement of the listing page. Uploads go one PUT per file with
// a progress bar each, after asking what to do with names that exist; a file
// larger than one part goes through the server's resumable endpoint (tus, with
// tus-js-client) in parts, retried when the network drops, and picked up where
// it stopped when the same file is chosen again after a reload. Delete
// asks with confirm() and removes the row. When uploads end, only the table is
// fetched again, so the progress list stays. Without JavaScript the forms do
// the same through the server (multipart POST, a confirmation page to delete).
(function () {
  "use strict";
  var form = document.getElementById("upload");
  if (!form || !window.XMLHttpRequest || !window.fetch) return;
  var folderUrl = form.getAttribute("action");
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var resumable = window.tus && window.tus.isSupported && form.dataset.resumable;
  var chunkSize = Number(form.dataset.chunkSize) || Infinity;
  var choice = form.querySelector("fieldset.exists");
  if (choice) choice.hidden = true;  // asked per file instead

  function fileUrl(name) {
    return folderUrl + name.split("/").map(encodeURIComponent).join("/");
  }

  function headers(accept) {
    var h = {Accept: accept};
    if (csrfMeta) h["X-CSRF-Token"] = csrfMeta.content;
    return h;
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  function errorOf(status, body, fallback) {
    try { return JSON.parse(body).error; } catch (e) { return fallback || "HTTP " + status; }
  }

  // -- the table: fetched again as HTML, only #entries replaced ----------------

  function refreshEntries() {
    return fetch(location.pathname + location.search,
                 {headers: {Accept: "text/html"}, credentials: "same-origin", cache: "no-store"})
      .then(function (r) { return r.ok ? r.text() : Promise.reject(new Error(r.statusText)); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("entries");
        var old = document.getElementById("entries");
        if (fresh && old) old.replaceWith(document.adoptNode(fresh));
      })
      .catch(function (e) { showError("Could not refresh the listing: " + e.message); });
  }

  function showError(message) {
    var old = document.getElementById("notice");
    if (old) old.remove();
    var notice = element("p", "error-message notice", message);
    notice.id = "notice";
    notice.setAttribute("role", "alert");
    document.getElementById("entries").before(notice);
  }

  // -- uploads -----------------------------------------------------------------

  // The folder's JSON listing from this name on (limit 1): the name itself comes
  // first if it exists. Unlike a HEAD, a new name answers 200, not a 404.
  function exists(name) {
    var query = new URLSearchParams({format: "json", prefix: name, limit: "1"});
    return fetch(folderUrl + "?" + query, {headers: {Accept: "application/json"},
                                           credentials: "same-origin", cache: "no-store"})
      .then(function (r) { return r.ok ? r.json() : {files: []}; })
      .then(function (listing) {
        return listing.files.some(function (f) { return f.name === listing.prefix; });
      }, function () { return false; });
  }

  function progressItem(name, list) {
    var item = element("li", "uploading");
    var bar = element("progress");
    bar.max = 100;
    bar.value = 0;
    item.dataset.name = name;
    item.appendChild(bar);
    item.appendChild(element("span", "label", " " + name));
    list.appendChild(item);
    return item;
  }

  // Resolves to "replace", "keep" or "skip", as the person clicks.
  function ask(item, name) {
    var bar = item.querySelector("progress");
    var label = item.querySelector(".label");
    bar.hidden = true;
    item.className = "conflict";
    label.textContent = " " + name + " exists:";
    return new Promise(function (resolve) {
      var buttons = [["replace", "Replace"], ["keep", "Keep both"], ["skip", "Skip"]].map(
        function (option) {
          var button = element("button", "", option[1]);
          button.type = "button";
          button.value = option[0];
          button.addEventListener("click", function () {
            buttons.forEach(function (b) { b.remove(); });
            bar.hidden = false;
            item.className = "uploading";
            label.textContent = " " + name;
            resolve(option[0]);
          });
          item.appendChild(button);
          return button;
        });
    });
  }

  function finished(item, name, stored, ok, why) {
    item.className = ok ? "done" : "failed";
    if (ok) item.querySelector("progress").value = 100;
    item.querySelector(".label").textContent = " " + name + " — " + (ok ? "done" +
      (stored && stored !== name.split("/").pop() ? ", stored as " + stored : "") : why);
    return ok;
  }

  function sendResumable(pick, item, keep) {
    var file = pick.file;
    var bar = item.querySelector("progress");
    var path = decodeURIComponent(folderUrl.replace(/^\/files\/?/, "")) + pick.name;
    var cut = path.lastIndexOf("/");
    return new Promise(function (resolve) {
      var upload = new window.tus.Upload(file, {
        endpoint: resumable,
        chunkSize: chunkSize,
        retryDelays: [0, 1000, 3000, 5000, 10000, 20000, 30000],
        removeFingerprintOnSuccess: true,
        metadata: {filename: path.slice(cut + 1), folder: path.slice(0, Math.max(cut, 0)),
                   filetype: file.type, exists: keep ? "keep" : "replace"},
        headers: csrfMeta ? {"X-CSRF-Token": csrfMeta.content} : {},
        onProgress: function (sent, total) { bar.value = Math.round((100 * sent) / total); },
        onSuccess: function (payload) {
          var where = payload && payload.lastResponse &&
            payload.lastResponse.getHeader("Content-Location");
          var stored = where && decodeURIComponent(where.split("/").pop());
          resolve(finished(item, pick.name, stored, true));
        },
        onError: function (error) {
          var answer = error.originalResponse;
          resolve(finished(item, pick.name, null, false, answer
            ? errorOf(answer.getStatus(), answer.getBody(), "HTTP " + answer.getStatus())
            : "connection failed"));
        }
      });
      // the same file chosen again (after a reload, say) goes on where it stopped
      upload.findPreviousUploads().then(function (previous) {
        if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
        upload.start();
      });
    });
  }

  function send(pick, item, keep) {
    var file = pick.file;
    if (resumable && file.size > chunkSize) return sendResumable(pick, item, keep);
    var bar = item.querySelector("progress");
    return new Promise(function (resolve) {
      var xhr = new XMLHttpRequest();
      // keep: the server picks the free "name (n).ext" as it stores
      xhr.open("PUT", fileUrl(pick.name) + (keep ? "?exists=keep" : ""));
      var h = headers("application/json");
      Object.keys(h).forEach(function (k) { xhr.setRequestHeader(k, h[k]); });
      if (file.type) xhr.setRequestHeader("Content-Type", file.type);
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
      };
      xhr.onload = function () {
        var ok = xhr.status === 200 || xhr.status === 201;
        resolve(finished(item, pick.name, ok && JSON.parse(xhr.responseText).name.split("/").pop(),
                         ok, errorOf(xhr.status, xhr.responseText, xhr.statusText)));
      };
      xhr.onerror = function () {
        resolve(finished(item, pick.name, null, false, "connection failed"));
      };
      xhr.send(file);
    });
  }

  function upload(pick, list) {
    var item = progressItem(pick.name, list);
    return exists(pick.name)
      .then(function (taken) { return taken ? ask(item, pick.name) : "replace"; })
      .then(function (answer) {
        if (answer !== "skip") return send(pick, item, answer === "keep");
        item.className = "skipped";
        item.querySelector(".label").textContent = " " + pick.name + " — skipped";
        return false;
      });
  }

  // What to upload: {file, name}, the name relative to this folder; a chosen or
  // dropped folder keeps its structure.
  function picks(files) {
    return Array.prototype.map.call(files, function (f) {
      return {file: f, name: f.webkitRelativePath || f.name};
    });
  }

  function walk(entry, dir) {  // a dropped file or folder -> a promise of picks
    if (entry.isFile) {
      return new Promise(function (resolve, reject) {
        entry.file(function (f) { resolve([{file: f, name: dir + f.name}]); }, reject);
      });
    }
    var reader = entry.createReader();
    var found = [];
    return new Promise(function (resolve, reject) {
      (function more() {  // readEntries gives a batch at a time, until an empty one
        reader.readEntries(function (batch) {
          if (batch.length) {
            found = found.concat(Array.prototype.slice.call(batch));
            return more();
          }
          Promise.all(found.map(function (e) { return walk(e, dir + entry.name + "/"); }))
            .then(function (lists) { resolve([].concat.apply([], lists)); }, reject);
        }, reject);
      })();
    });
  }

  function start(chosen) {
    if (!chosen.length) return;
    var list = document.getElementById("progress");
    // the last batch's finished items make way; running ones stay
    list.querySelectorAll("li.done, li.failed, li.skipped").forEach(function (li) { li.remove(); });
    Promise.all(chosen.map(function (p) { return upload(p, list); })).then(function (results) {
      if (results.some(Boolean)) refreshEntries();
    });
  }

  var fileInput = form.querySelector("input[type=file]");
  var folderInput = element("input");  // only with JavaScript: the form posts files alone
  folderInput.type = "file";
  folderInput.webkitdirectory = true;
  folderInput.multiple = true;
  folderInput.className = "folder";
  folderInput.setAttribute("aria-label", "A folder to upload");
  var folderLabel = element("label", "folder", "Folder: ");
  folderLabel.appendChild(folderInput);
  fileInput.after(folderLabel);
  fileInput.required = false;  // a folder alone is enough
  form.querySelector(".hint").after(element("span", "drop-hint", " or drop files and folders here"));

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var chosen = picks(fileInput.files).concat(picks(folderInput.files));
    fileInput.value = folderInput.value = "";
    start(chosen);
  });

  form.addEventListener("dragover", function (event) {
    event.preventDefault();
    form.classList.add("dragging");
  });
  form.addEventListener("dragleave", function () { form.classList.remove("dragging"); });
  form.addEventListener("drop", function (event) {
    event.preventDefault();
    form.classList.remove("dragging");
    var items = Array.prototype.slice.call(event.dataTransfer.items || []);
    var entries = items.map(function (i) { return i.webkitGetAsEntry && i.webkitGetAsEntry(); })
      .filter(Boolean);
    if (!entries.length) return start(picks(event.dataTransfer.files));
    Promise.all(entries.map(function (e) { return walk(e, ""); })).then(function (lists) {
      start([].concat.apply([], lists));
    }, function (e) { showError("Could not read what was dropped: " + e.message); });
  });

  // -- delete ------------------------------------------------------------------

  document.addEventListener("submit", function (event) {
    var del = event.target.closest("#files form.delete");
    if (!del) return;
    event.preventDefault();
    var row = del.closest("tr");
    if (!window.confirm("Delete " + row.dataset.name + "?")) return;
    fetch(del.getAttribute("action"), {method: "DELETE", headers: headers("application/json"),
                                       credentials: "same-origin"})
      .then(function (r) {
        if (r.status === 204) return null;
        return r.text().then(function (body) { return errorOf(r.status, body, r.statusText); });
      })
      .then(function (error) {
        if (error) return showError(error);
        var old = document.getElementById("notice");
        if (old) old.remove();
        var body = row.parentNode;
        row.remove();
        if (!body.querySelector("tr")) refreshEntries();  // the empty-folder text
      }, function () { showError("Could not delete " + row.dataset.name + ": connection failed"); });
  });
})();
