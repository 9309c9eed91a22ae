// Progressive enhancement of the mosaic pages. Without JavaScript their forms
// post multipart: tiles land on the job's page (it refreshes itself, then shows
// the report), a mosaic on its result once it is made (303). With it:
//   /mosaic/tiles  the upload goes with an upload progress bar and
//                  "Prefer: respond-async"; the job is polled (ingest progress),
//                  then the report (as the job's page renders it) shows and the
//                  gallery refreshes in place; the tiles' delete buttons send DELETE.
//   /mosaic        the same for making a mosaic (matching, rendering), then the
//                  result image shows without a page reload.
(function () {
  "use strict";
  if (!window.XMLHttpRequest || !window.FormData || !window.JSON) return;

  var STAGES = {ingesting: "Adding tiles", indexing: "Indexing tiles",
                matching: "Matching cells to tiles", rendering: "Rendering"};
  var KINDS = {tiles: "Adding tiles", mosaic: "Making the mosaic"};

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  // Like the server's format_size: "512 bytes", "1.5 KiB", "3.2 MiB".
  function formatSize(n) {
    var units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    for (var i = 0; n >= 1024 && i < units.length - 1; i++) n /= 1024;
    return i === 0 ? n + " bytes" : n.toFixed(1) + " " + units[i];
  }

  // The message of a JSON error answer ({"error": ..., "status": ...}), else the status line.
  function errorOf(xhr) {
    try {
      var body = JSON.parse(xhr.responseText);
      if (body && body.error) return body.error;
    } catch (e) { /* not JSON: a proxy's page, or waitress's own 413 */ }
    return "The server answered " + xhr.status + " " + (xhr.statusText || "") + ".";
  }

  function request(method, url, options) {
    options = options || {};
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open(method, url);
      xhr.setRequestHeader("Accept", options.accept || "application/json");
      var csrf = document.querySelector('meta[name="csrf-token"]');
      if (csrf && method !== "GET") xhr.setRequestHeader("X-CSRF-Token", csrf.content);
      if (options.prefer) xhr.setRequestHeader("Prefer", options.prefer);
      if (options.onprogress) {
        xhr.upload.onprogress = options.onprogress;
        xhr.upload.onload = options.onuploaded || null;
      }
      xhr.onload = function () { resolve(xhr); };
      xhr.onerror = function () { reject(new Error("The connection to the server failed.")); };
      xhr.send(options.body || null);
    });
  }

  function json(xhr) {
    try { return JSON.parse(xhr.responseText); } catch (e) { return null; }
  }

  // A bar: a known fraction, or indeterminate (no value attribute) when total is 0.
  function setBar(bar, done, total) {
    if (total > 0) {
      bar.max = total;
      bar.value = Math.min(done, total);
    } else {
      bar.removeAttribute("value");
    }
  }

  // One background job panel: an upload step, then a work step (the job).
  function Panel(section, error) {
    this.section = section;
    this.error = error;
    this.upload = section.querySelector(".upload-step");
    this.work = section.querySelector(".work-step");
  }

  Panel.prototype.start = function () {
    this.error.hidden = true;
    this.error.textContent = "";
    this.section.hidden = false;
    this.section.dataset.state = "uploading";
    this.upload.hidden = false;
    this.upload.className = "upload-step";
    setBar(this.upload.querySelector("progress"), 0, 100);
    this.upload.querySelector(".label").textContent = "Uploading…";
    this.work.hidden = true;
    this.work.className = "work-step";
  };

  Panel.prototype.uploadProgress = function (event) {
    if (!event.lengthComputable) return;
    setBar(this.upload.querySelector("progress"), event.loaded, event.total);
    this.upload.querySelector(".label").textContent = "Uploading: " +
      Math.round((100 * event.loaded) / event.total) + "% (" + formatSize(event.loaded) +
      " of " + formatSize(event.total) + ")";
  };

  Panel.prototype.uploaded = function () {
    var bar = this.upload.querySelector("progress");
    setBar(bar, bar.max, bar.max);
    this.upload.className = "upload-step done";
    this.upload.querySelector(".label").textContent = "Uploaded.";
  };

  Panel.prototype.showJob = function (job) {
    this.section.dataset.state = job.state;
    this.work.hidden = false;
    this.work.className = "work-step " + job.state;
    var bar = this.work.querySelector("progress");
    var label = this.work.querySelector(".label");
    var stage = STAGES[job.stage] || job.stage || "Working";
    if (job.state === "queued") {
      setBar(bar, 0, 0);
      label.textContent = "Waiting for a free worker…";
    } else if (job.state === "done") {
      setBar(bar, 1, 1);
      label.textContent = (KINDS[job.kind] || "Work") + ": done" +
        (job.total ? " (" + job.done + " / " + job.total + ")" : "") + ".";
    } else if (job.state === "failed") {
      setBar(bar, job.done, job.total || 1);
      label.textContent = job.stage ? stage + ": failed" +
        (job.total ? " at " + job.done + " / " + job.total : "") + "." : "Failed.";
    } else if (job.stage === "matching" && !job.done) {
      // matching reports no steps of its own: a moving bar, and how much work it is
      setBar(bar, 0, 0);
      label.textContent = "Matching " + plural(job.total, "cell") + " to tiles…";
    } else if (job.total) {
      setBar(bar, job.done, job.total);
      label.textContent = stage + ": " + job.done + " / " + job.total + " (" +
        Math.floor((100 * job.done) / job.total) + "%)";
    } else {
      setBar(bar, 0, 0);
      label.textContent = stage + "…";
    }
  };

  Panel.prototype.fail = function (message) {
    this.section.dataset.state = "failed";
    this.error.textContent = message;
    this.error.hidden = false;
  };

  // POST the form as a job: upload progress, then poll until the job ends.
  // Resolves with the finished job; rejects with an Error whose message says why.
  function runJob(form, panel) {
    panel.start();
    return request("POST", form.getAttribute("action"), {
      body: new FormData(form), prefer: "respond-async",
      onprogress: function (e) { panel.uploadProgress(e); },
      onuploaded: function () { panel.uploaded(); }
    }).then(function (xhr) {
      var job = json(xhr);
      if (xhr.status !== 202 || !job || !job.url) throw new Error(errorOf(xhr));
      panel.uploaded();
      return poll(job, panel);
    });
  }

  function poll(job, panel) {
    var delay = 150;
    return new Promise(function (resolve, reject) {
      function step(current) {
        panel.showJob(current);
        if (current.state === "done") return resolve(current);
        if (current.state === "failed") {
          return reject(new Error(current.error || "The job failed."));
        }
        setTimeout(function () {
          request("GET", job.url).then(function (xhr) {
            if (xhr.status === 404) {
              throw new Error("The server forgot the job (was it restarted?); " +
                              "reload the page to see what was done.");
            }
            var next = json(xhr);
            if (xhr.status !== 200 || !next) throw new Error(errorOf(xhr));
            step(next);
          }).catch(reject);
        }, delay);
        delay = Math.min(1000, delay * 1.4);
      }
      step(job);
    });
  }

  function busy(form, on) {
    var button = form.querySelector("button[type=submit]");
    if (button) button.disabled = on;
    form.setAttribute("aria-busy", on ? "true" : "false");
  }

  // -- /mosaic/tiles ------------------------------------------------------------------

  function setCount(element, n) {
    element.dataset.count = n;
    element.textContent = plural(n, "tile") + " in the library.";
  }

  // A page of this server, parsed.
  function fetchPage(url) {
    return request("GET", url, {accept: "text/html"}).then(function (xhr) {
      if (xhr.status !== 200) throw new Error(errorOf(xhr));
      return new DOMParser().parseFromString(xhr.responseText, "text/html");
    });
  }

  // The report as the job's page shows it: one template renders it for both.
  function showReport(container, job) {
    return fetchPage(job.url).then(function (page) {
      var report = page.querySelector("#job .report");
      if (!report) throw new Error("The job's page shows no report; reload the page.");
      container.textContent = "";
      Array.prototype.forEach.call(report.childNodes, function (node) {
        container.appendChild(document.importNode(node, true));
      });
      container.hidden = false;
    });
  }

  // Replace the gallery with the server's current one (same page of it).
  function refreshGallery() {
    return fetchPage(window.location.href).then(function (page) {
      var fresh = page.getElementById("gallery");
      var gallery = document.getElementById("gallery");
      if (fresh && gallery) gallery.parentNode.replaceChild(document.importNode(fresh, true), gallery);
    });
  }

  function initTiles(form) {
    var panel = new Panel(document.getElementById("tiles-job"),
                          document.getElementById("tiles-error"));
    var report = panel.section.querySelector(".report");

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      busy(form, true);
      report.hidden = true;
      runJob(form, panel).then(function (job) {
        form.reset();
        return Promise.all([showReport(report, job), refreshGallery()]);
      }).catch(function (error) {
        panel.fail(error.message);
      }).then(function () {
        busy(form, false);
      });
    });

    // The tiles' delete buttons (the gallery is replaced, so listen above it).
    document.addEventListener("submit", function (event) {
      var del = event.target;
      if (!del.matches || !del.matches("#gallery form.delete")) return;
      event.preventDefault();
      var tile = del.closest("li.tile");
      var button = del.querySelector("button");
      button.disabled = true;
      request("DELETE", del.getAttribute("action")).then(function (xhr) {
        if (xhr.status !== 204) throw new Error(errorOf(xhr));
        if (tile) tile.parentNode.removeChild(tile);
        var count = document.getElementById("tile-count");
        if (count) setCount(count, Math.max(0, Number(count.dataset.count) - 1));
      }).catch(function (error) {
        button.disabled = false;
        panel.error.textContent = error.message;
        panel.error.hidden = false;
      });
    });
  }

  // -- /mosaic ------------------------------------------------------------------------

  function link(href, text, className) {
    var a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    if (className) a.className = className;
    return a;
  }

  function filePath(name) {
    return "/files/" + name.split("/").map(encodeURIComponent).join("/");
  }

  function showResult(result) {
    var section = document.getElementById("result");
    if (!section) {
      section = document.createElement("section");
      section.id = "result";
      document.querySelector("main").appendChild(section);
    }
    section.textContent = "";
    var url = filePath(result.name);
    var heading = document.createElement("h2");
    heading.textContent = "Result";
    var links = document.createElement("p");
    links.className = "links";
    links.appendChild(link(url, result.name, "open"));
    links.appendChild(document.createTextNode(" · "));
    links.appendChild(link(url + "?download", "Download", "download"));
    var details = document.createElement("p");
    details.className = "details";
    details.textContent = result.cols + " × " + result.rows + " cells, " +
      plural(result.tiles_used, "different tile") + ", " + result.seconds + " s";
    var image = document.createElement("img");
    image.className = "mosaic";
    image.alt = "mosaic " + result.name;
    image.src = url;
    var frame = link(url, "", "image");
    frame.appendChild(image);
    [heading, links, details, frame].forEach(function (e) { section.appendChild(e); });
    if (window.history && history.replaceState) {
      history.replaceState(null, "", "/mosaic?result=" + encodeURIComponent(result.name));
    }
  }

  function initMosaic(form) {
    var panel = new Panel(document.getElementById("mosaic-job"),
                          document.getElementById("mosaic-error"));
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      busy(form, true);
      runJob(form, panel).then(function (job) {
        showResult(job.result);
      }).catch(function (error) {
        panel.fail(error.message);
      }).then(function () {
        busy(form, false);
      });
    });
  }

  var tiles = document.getElementById("tiles-upload");
  if (tiles) initTiles(tiles);
  var mosaic = document.getElementById("mosaic-form");
  if (mosaic) initMosaic(mosaic);
})();
