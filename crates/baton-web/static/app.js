// Live updates for run pages: follow the log over Server-Sent Events while the job runs,
// then reload once so the final, fully rendered page (colours, status, exit code) shows.
// Without JavaScript every page still works; it just does not update by itself.
(function () {
  "use strict";
  var pre = document.getElementById("log");
  if (!pre || pre.dataset.live !== "true" || !window.EventSource) return;
  var run = pre.dataset.run, job = pre.dataset.job, offset = pre.dataset.offset;
  var lines = parseInt(pre.dataset.lines, 10) || pre.querySelectorAll(".line").length;
  var current = null; // the last, unfinished line element
  var ESC = /\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07/g;
  function newLine() {
    lines += 1;
    var span = document.createElement("span");
    span.className = "line";
    span.id = "L" + lines;
    var a = document.createElement("a");
    a.className = "ln"; a.href = "#L" + lines; a.textContent = String(lines);
    span.appendChild(a);
    var t = document.createTextNode("");
    span.appendChild(t);
    span.appendChild(document.createTextNode("\n"));
    pre.appendChild(span);
    return t;
  }
  function append(text) {
    var stick = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    var parts = text.replace(ESC, "").split("\n");
    for (var i = 0; i < parts.length; i++) {
      if (i > 0) current = null;
      var p = parts[i];
      if (p === "" && i === parts.length - 1) break;
      if (!current) current = newLine();
      var cr = p.replace(/\r$/, "").lastIndexOf("\r");
      if (cr >= 0) { current.data = ""; p = p.slice(cr + 1); }
      current.data += p.replace(/\r$/, "");
    }
    if (stick) window.scrollTo(0, document.body.scrollHeight);
  }
  var es = new EventSource("/api/v1/runs/" + run + "/log/stream?job=" + encodeURIComponent(job) + "&offset=" + offset);
  es.addEventListener("log", function (e) { append(JSON.parse(e.data).text); });
  es.addEventListener("end", function (e) {
    es.close();
    var st = JSON.parse(e.data).status;
    var s = document.getElementById("status");
    if (s) { s.textContent = st; s.className = "pill big s-" + st; }
    setTimeout(function () { window.location.reload(); }, 300);
  });
  es.onerror = function () { /* the browser retries with Last-Event-ID */ };
})();

// Lists (dashboard, runs, a finished or queued run) refresh themselves when anything changes:
// the server sends a bare "change" event, and the page re-fetches itself and swaps <main>.
(function () {
  "use strict";
  if (document.body.dataset.refresh !== "yes" || !window.EventSource) return;
  var busy = false;
  function refresh() {
    if (busy) return;
    busy = true;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("main"), main = document.querySelector("main");
        var active = document.activeElement;
        // Never clobber a form the user is typing in.
        if (fresh && main && !(active && main.contains(active) && /INPUT|TEXTAREA|SELECT/.test(active.tagName))) {
          main.innerHTML = fresh.innerHTML;
          if (doc.body.dataset.refresh !== "yes") window.location.reload();
        }
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }
  var es = new EventSource("/api/v1/events");
  es.addEventListener("change", refresh);
  // Tells whoever looks (the browser tests) that changes from now on will arrive.
  // A change between this page's rendering and the feed's (re)connection sends no event:
  // look once on every open.
  es.onopen = function () { document.body.dataset.changes = "open"; refresh(); };
})();
