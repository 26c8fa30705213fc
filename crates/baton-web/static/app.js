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
