// The pages' script. Every page works without it; with it, pages follow what happens:
// - a running job's log streams in over Server-Sent Events, with its terminal colours;
// - every page with data-refresh="yes" re-fetches itself when the change feed says something
//   it shows changed (a run page swaps its summary: status, facts, DAG, job pills; its log
//   stays, unless the page follows the run and another job became the one to watch);
// - running durations tick every second, counted on the server's clock;
// - a #LN anchor outside the lines shown loads the window around line N;
// - a log has a toolbar: search with a match count and next/previous (`/` focuses it), wrap,
//   timestamps (when each line arrived, from the log's index), top and end; stderr lines are
//   marked; GitHub `::group::` and GitLab `section_start` sections fold, with their duration;
// - keyboard shortcuts: `/` search, `j`/`k` through lists, `r` rerun, `t` timestamps, `?` help.
(function () {
  "use strict";

  // One duration format everywhere (baton_core::run::format_duration_ms).
  function fmtDur(ms) {
    ms = Math.max(0, Math.floor(ms));
    var two = function (n) { return (n < 10 ? "0" : "") + n; };
    if (ms < 10000) return Math.floor(ms / 1000) + "." + Math.floor((ms % 1000) / 100) + "s";
    if (ms < 60000) return Math.floor(ms / 1000) + "s";
    if (ms < 3600000) return Math.floor(ms / 60000) + "m " + two(Math.floor(ms / 1000) % 60) + "s";
    return Math.floor(ms / 3600000) + "h " + two(Math.floor(ms / 60000) % 60) + "m";
  }

  // --- Running durations ------------------------------------------------------------------
  var skew = (parseInt(document.body.dataset.now, 10) || Date.now()) - Date.now();
  function tick() {
    var now = Date.now() + skew;
    var els = document.querySelectorAll(".tick[data-since]");
    for (var i = 0; i < els.length; i++) {
      var e = els[i], since = parseInt(e.getAttribute("data-since"), 10);
      if (!since) continue;
      e.textContent = (e.getAttribute("data-prefix") || "") + fmtDur(now - since) +
        (e.getAttribute("data-suffix") || "");
    }
  }
  setInterval(tick, 1000);

  // --- Terminal output to DOM (the same classes as the server's crate::ansi) ---------------
  function level(v) { return v === 0 ? 0 : 55 + v * 40; }
  function nearest(r, g, b) {
    function rgb(i) {
      if (i < 232) { i -= 16; return [level(Math.floor(i / 36)), level(Math.floor(i / 6) % 6), level(i % 6)]; }
      var v = 8 + (i - 232) * 10; return [v, v, v];
    }
    function dist(i) { var c = rgb(i); return Math.pow(r - c[0], 2) + Math.pow(g - c[1], 2) + Math.pow(b - c[2], 2); }
    function step(v) { var best = 0; for (var k = 1; k < 6; k++) if (Math.abs(level(k) - v) < Math.abs(level(best) - v)) best = k; return best; }
    var cube = 16 + 36 * step(r) + 6 * step(g) + step(b), grey = 232;
    for (var i = 233; i < 256; i++) if (dist(i) < dist(grey)) grey = i;
    return dist(grey) < dist(cube) ? grey : cube;
  }
  function Style() { this.fg = null; this.bg = null; this.bo = false; this.di = false; this.it = false; this.un = false; this.iv = false; }
  Style.prototype.copy = function () { var s = new Style(); for (var k in this) if (this.hasOwnProperty(k)) s[k] = this[k]; return s; };
  Style.prototype.classes = function () {
    var c = [], fg = this.fg, bg = this.bg;
    if (this.iv) { c.push(bg === null ? "fi" : "f" + bg); c.push(fg === null ? "bi" : "b" + fg); }
    else { if (fg !== null) c.push("f" + fg); if (bg !== null) c.push("b" + bg); }
    if (this.bo) c.push("bo"); if (this.di) c.push("di"); if (this.it) c.push("it"); if (this.un) c.push("un");
    return c.join(" ");
  };
  Style.prototype.sgr = function (ps) {
    if (ps.length === 0) ps = [0];
    for (var i = 0; i < ps.length; i++) {
      var p = ps[i];
      if (p === 0) { var d = new Style(); for (var k in d) if (d.hasOwnProperty(k)) this[k] = d[k]; }
      else if (p === 1) this.bo = true; else if (p === 2) this.di = true;
      else if (p === 3) this.it = true; else if (p === 4) this.un = true; else if (p === 7) this.iv = true;
      else if (p === 22) { this.bo = false; this.di = false; }
      else if (p === 23) this.it = false; else if (p === 24) this.un = false; else if (p === 27) this.iv = false;
      else if (p >= 30 && p <= 37) this.fg = p - 30; else if (p === 39) this.fg = null;
      else if (p >= 40 && p <= 47) this.bg = p - 40; else if (p === 49) this.bg = null;
      else if (p >= 90 && p <= 97) this.fg = p - 90 + 8; else if (p >= 100 && p <= 107) this.bg = p - 100 + 8;
      else if (p === 38 || p === 48) {
        var c = null;
        if (ps[i + 1] === 5) { c = Math.min(ps[i + 2] || 0, 255); i += 2; }
        else if (ps[i + 1] === 2) { c = nearest(Math.min(ps[i + 2] || 0, 255), Math.min(ps[i + 3] || 0, 255), Math.min(ps[i + 4] || 0, 255)); i += 4; }
        if (c !== null) { if (p === 38) this.fg = c; else this.bg = c; }
      }
    }
  };

  // A terminal that writes lines into <pre id="log">: cells of the current line are kept so
  // that \r, ESC[K and ESC[nG overwrite them as a terminal would.
  function Term(pre, lines, offset) {
    this.pre = pre; this.lines = lines; this.style = new Style(); this.pending = "";
    this.cells = null; this.cursor = 0; this.el = null; this.body = null;
    // Byte offsets in the log (the index's marks are in bytes), the raw text of the current
    // line (section markers are read from it), and the marks not yet passed.
    this.offset = offset; this.lineStart = offset; this.raw = ""; this.marks = [];
  }
  Term.prototype.markAt = function (off) {
    var ms = this.marks, k = -1;
    for (var i = 0; i < ms.length && ms[i].offset <= off; i++) k = i;
    if (k > 0) { this.marks = ms.slice(k); k = 0; }
    return k >= 0 ? this.marks[k] : null;
  };
  Term.prototype.endLine = function (raw) {
    var m = marker(raw), l = this.el;
    if (!m || !l) return;
    if (m.start) {
      l.classList.add("sec-start"); l.dataset.sec = m.name;
      if (m.ts !== null) l.dataset.secTs = String(m.ts);
      if (m.collapsed) l.dataset.collapsed = "true";
      this.cells = []; var t = m.title; for (var i = 0; i < t.length; i++) this.cells.push([t.charAt(i), ""]);
      this.draw();
    } else {
      l.classList.add("sec-end"); if (m.name) l.dataset.sec = m.name;
      if (m.ts !== null) l.dataset.secTs = String(m.ts);
    }
  };
  Term.prototype.newLine = function () {
    this.lines += 1;
    var span = document.createElement("span");
    span.className = "line"; span.id = "L" + this.lines;
    var a = document.createElement("a");
    a.className = "ln"; a.href = "#L" + this.lines; a.textContent = String(this.lines);
    this.body = document.createElement("span");
    span.appendChild(a); span.appendChild(this.body); span.appendChild(document.createTextNode("\n"));
    var mk = this.markAt(this.lineStart);
    if (mk) {
      span.dataset.t = String(mk.time_ms);
      if (mk.stream === "stderr") span.classList.add("err");
      stamp(span);
    }
    this.pre.appendChild(span);
    this.cells = []; this.cursor = 0; this.el = span;
  };
  Term.prototype.put = function (ch) {
    if (!this.cells) this.newLine();
    while (this.cells.length < this.cursor) this.cells.push([" ", ""]);
    this.cells[this.cursor] = [ch, this.style.classes()];
    this.cursor += 1;
  };
  Term.prototype.draw = function () {
    if (!this.cells) return;
    var b = this.body; while (b.firstChild) b.removeChild(b.firstChild);
    var run = "", cls = null;
    var flush = function () {
      if (run === "") return;
      if (cls) { var s = document.createElement("span"); s.className = cls; s.textContent = run; b.appendChild(s); }
      else b.appendChild(document.createTextNode(run));
      run = "";
    };
    for (var i = 0; i < this.cells.length; i++) {
      if (this.cells[i][1] !== cls) { flush(); cls = this.cells[i][1]; }
      run += this.cells[i][0];
    }
    flush();
  };
  Term.prototype.csi = function (raw, fin) {
    var nums = raw.replace(/^\?/, "").split(/[;:]/).map(function (v) { return parseInt(v, 10) || 0; });
    var n = Math.max(nums[0] || 1, 1);
    if (fin === "m" && raw.charAt(0) !== "?") this.style.sgr(raw === "" ? [] : nums);
    else if (!this.cells) return;
    else if (fin === "K") {
      if ((nums[0] || 0) === 0) this.cells.length = Math.min(this.cells.length, this.cursor);
      else if (nums[0] === 1) for (var i = 0; i < Math.min(this.cursor, this.cells.length); i++) this.cells[i] = [" ", ""];
      else this.cells.length = 0;
    } else if (fin === "G") this.cursor = n - 1;
    else if (fin === "C") this.cursor += n;
    else if (fin === "D") this.cursor = Math.max(0, this.cursor - n);
  };
  Term.prototype.write = function (text) {
    text = this.pending + text; this.pending = "";
    var i = 0, from = 0;
    while (i < text.length) {
      var c = text.charAt(i);
      if (c === "\n") {
        if (!this.cells) this.newLine();
        this.draw();
        this.endLine(this.raw + text.slice(from, i));
        this.offset += utf8(text.slice(from, i + 1)); this.lineStart = this.offset;
        this.raw = ""; from = i + 1;
        this.cells = null; i++;
      }
      else if (c === "\r") { if (text.charAt(i + 1) !== "\n") this.cursor = 0; i++; }
      else if (c === "\b") { this.cursor = Math.max(0, this.cursor - 1); i++; }
      else if (c === "\x1b") {
        var m = /^\x1b\[([0-9;:?<=>]*)[ -\/]*([@-~])/.exec(text.slice(i, i + 80));
        var o = /^\x1b\][^\x07\x1b]*(\x07|\x1b\\)/.exec(text.slice(i));
        if (m) { this.csi(m[1], m[2]); i += m[0].length; }
        else if (o) i += o[0].length;
        else if (text.length - i < 80 && /^\x1b(\[[0-9;:?<=>]*[ -\/]*|\][^\x07\x1b]*\x1b?)?$/.test(text.slice(i))) { this.pending = text.slice(i); break; }
        else i += 2;
      } else { if (c >= " " || c === "\t") this.put(c); i++; }
    }
    var done = this.pending ? text.length - this.pending.length : text.length;
    this.raw += text.slice(from, done); this.offset += utf8(text.slice(from, done));
    this.draw();
  };

  function utf8(s) {
    if (window.TextEncoder) return new TextEncoder().encode(s).length;
    return unescape(encodeURIComponent(s)).length;
  }

  // --- Section markers (the same grammar as the server's ui::logmeta::marker) --------------
  function marker(raw) {
    var p = raw.replace(/\x1b\[[0-9;:?<=>]*[ -\/]*[@-~]/g, "").replace(/\x1b/g, "");
    var t = p.replace(/^[ \t\r]+/, ""), m;
    if (t.indexOf("::group::") === 0) { var n = t.slice(9).trim(); return { start: true, name: n, title: n, ts: null, collapsed: false }; }
    if (t.indexOf("::endgroup::") === 0) return { start: false, name: null, ts: null };
    if ((m = /section_start:(\d+):([A-Za-z0-9_.\-]+)(?:\[([^\]]*)\])?([\s\S]*)$/.exec(p))) {
      var shown = m[4].split("\r").pop().trim();
      return { start: true, name: m[2], title: shown || m[2], ts: parseInt(m[1], 10),
        collapsed: (m[3] || "").split(",").some(function (o) { return o.trim() === "collapsed=true"; }) };
    }
    if ((m = /section_end:(\d+):([A-Za-z0-9_.\-]+)/.exec(p))) return { start: false, name: m[2], ts: parseInt(m[1], 10) };
    return null;
  }

  // --- Timestamps: each line's arrival time, shown when the toolbar's toggle is on ---------
  function two(n) { return (n < 10 ? "0" : "") + n; }
  function stamp(line) {
    var t = parseInt(line.dataset.t, 10);
    if (!t) return;
    var d = new Date(t), ms = d.getMilliseconds();
    line.dataset.ts = two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds()) +
      "." + (ms < 100 ? "0" : "") + two(ms);
    var ln = line.querySelector(".ln");
    if (ln) ln.title = d.toISOString() + (line.classList.contains("err") ? " · stderr" : "");
  }

  // --- Collapsible sections: a header folds the lines up to its end -----------------------
  // Pairs headers with ends (GitLab by name, GitHub the innermost), sets durations and the
  // default state (GitLab's [collapsed=true]; a GitHub group folds once it has ended, as
  // GitHub's does), then hides the lines inside folded sections.
  function sections(pre) {
    var lines = pre.querySelectorAll(".line"), open = [], i, l;
    for (i = 0; i < lines.length; i++) {
      l = lines[i];
      if (l.classList.contains("sec-start")) {
        if (!l.dataset.init) {
          l.dataset.init = "1"; l.tabIndex = 0; l.setAttribute("role", "button");
          if (l.dataset.collapsed === "true") l.classList.add("closed");
        }
        open.push(l);
      } else if (l.classList.contains("sec-end")) {
        var at = -1;
        for (var k = open.length - 1; k >= 0; k--) if (!l.dataset.sec || open[k].dataset.sec === l.dataset.sec) { at = k; break; }
        if (at < 0) continue;
        var h = open[at];
        if (!h.dataset.dur) {
          var d = null;
          if (h.dataset.secTs && l.dataset.secTs) d = (parseInt(l.dataset.secTs, 10) - parseInt(h.dataset.secTs, 10)) * 1000;
          else if (h.dataset.t && l.dataset.t) d = parseInt(l.dataset.t, 10) - parseInt(h.dataset.t, 10);
          if (d !== null) h.dataset.dur = fmtDur(d);
        }
        if (!h.dataset.ended) {
          h.dataset.ended = "1";
          if (!h.dataset.user && !h.dataset.secTs) h.classList.add("closed");
        }
        open.length = at;
      }
    }
    var folded = 0; open = [];
    for (i = 0; i < lines.length; i++) {
      l = lines[i];
      l.classList.toggle("sec-hid", folded > 0);
      if (l.classList.contains("sec-start")) {
        var closed = l.classList.contains("closed");
        l.setAttribute("aria-expanded", closed ? "false" : "true");
        open.push(closed); if (closed) folded++;
      } else if (l.classList.contains("sec-end") && open.length) {
        if (open.pop()) folded--;
      }
    }
  }
  // Opens the sections around `line` (a search hit, a #LN target).
  function reveal(line) {
    if (!line || !line.classList.contains("sec-hid")) return;
    var pre = document.getElementById("log"), lines = pre.querySelectorAll(".line"), open = [];
    for (var i = 0; i < lines.length && lines[i] !== line; i++) {
      var l = lines[i];
      if (l.classList.contains("sec-start")) open.push(l);
      else if (l.classList.contains("sec-end")) open.pop();
    }
    open.forEach(function (h) { h.classList.remove("closed"); h.dataset.user = "1"; });
    sections(pre);
  }
  function logSections() {
    var pre = document.getElementById("log");
    if (!pre) return;
    // The server leaves out a time equal to the line above's.
    var ls = pre.querySelectorAll(".line"), last = "";
    for (var i = 0; i < ls.length; i++) {
      if (ls[i].dataset.t) last = ls[i].dataset.t; else if (last) ls[i].dataset.t = last;
      stamp(ls[i]);
    }
    sections(pre);
    var toggle = function (e) {
      var l = e.target.closest && e.target.closest(".line.sec-start");
      if (!l || e.target.closest(".ln")) return;
      if (e.type === "keydown" && e.key !== "Enter" && e.key !== " ") return;
      e.preventDefault();
      l.classList.toggle("closed"); l.dataset.user = "1";
      sections(pre);
    };
    pre.addEventListener("click", toggle);
    pre.addEventListener("keydown", toggle);
    if (!logSections.hooked) {
      logSections.hooked = true;
      window.addEventListener("hashchange", function () {
        var t = /^#L\d+$/.test(window.location.hash) && document.getElementById(window.location.hash.slice(1));
        if (t) { reveal(t); t.scrollIntoView({ block: "center" }); }
      });
    }
    if (/^#L\d+$/.test(window.location.hash)) {
      var target = document.getElementById(window.location.hash.slice(1));
      if (target) { reveal(target); target.scrollIntoView({ block: "center" }); }
    }
  }

  // --- The live log of a running job ------------------------------------------------------
  var follower = null;
  function follow() {
    var pre = document.getElementById("log");
    if (!pre || pre.dataset.live !== "true" || !window.EventSource) return;
    var lines = parseInt(pre.dataset.lines, 10) || pre.querySelectorAll(".line").length;
    var term = new Term(pre, lines, parseInt(pre.dataset.offset, 10) || 0);
    var es = new EventSource("/api/v1/runs/" + pre.dataset.run + "/log/stream?job=" +
      encodeURIComponent(pre.dataset.job) + "&offset=" + pre.dataset.offset);
    follower = es;
    es.addEventListener("log", function (e) {
      // Follows the end only while the reader is at the end: scrolling up stops it.
      var stick = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
      var d = JSON.parse(e.data);
      if (d.marks) term.marks = term.marks.concat(d.marks);
      term.write(d.text);
      sections(pre);
      if (stick) window.scrollTo(0, document.body.scrollHeight);
    });
    es.addEventListener("end", function (e) {
      es.close();
      follower = null;
      pre.dataset.live = "ended";
      var live = document.getElementById("live");
      if (live) live.textContent = "This job ended: " + JSON.parse(e.data).status + ".";
      refresh();
    });
    es.onerror = function () { /* the browser retries with Last-Event-ID */ };
  }

  // --- A #LN anchor the page does not hold: load the window around line N ------------------
  function jumpToLine() {
    var m = /^#L(\d+)$/.exec(window.location.hash), pre = document.getElementById("log");
    if (!m || !pre || document.getElementById("L" + m[1])) return;
    var q = new URLSearchParams(window.location.search);
    if (q.get("line") === m[1]) return; // already asked: the line does not exist
    q.set("job", pre.dataset.jobName); q.set("line", m[1]); q.delete("before");
    window.location.replace(window.location.pathname + "?" + q.toString() + "#L" + m[1]);
  }
  window.addEventListener("hashchange", jumpToLine);

  // --- Pages that refresh themselves on the change feed ------------------------------------
  var busy = false, again = false;
  function typing(root) {
    var a = document.activeElement;
    return a && root.contains(a) && /INPUT|TEXTAREA|SELECT/.test(a.tagName);
  }
  function swap(doc) {
    document.title = doc.title;
    var icon = doc.getElementById("favicon"), mine = document.getElementById("favicon");
    if (icon && mine) mine.setAttribute("href", icon.getAttribute("href"));
    var fresh = doc.getElementById("summary"), summary = document.getElementById("summary");
    if (fresh && summary) {
      summary.innerHTML = fresh.innerHTML;
      // A page following the run (no job picked) moves on to the job to watch now.
      var q = new URLSearchParams(window.location.search), pre = document.getElementById("log");
      var next = doc.getElementById("log");
      if (!q.get("job") && !q.get("before") && !q.get("line") && !follower && pre && next &&
          next.dataset.job !== pre.dataset.job) {
        document.getElementById("log-section").innerHTML = doc.getElementById("log-section").innerHTML;
        toolbar();
        logSections();
        follow();
      }
    } else {
      var main = document.querySelector("main"), freshMain = doc.querySelector("main");
      if (!main || !freshMain || typing(main)) return;
      main.innerHTML = freshMain.innerHTML;
    }
    reselect();
    tick();
  }
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html) swap(new DOMParser().parseFromString(html, "text/html")); })
      .catch(function () {})
      .then(function () { busy = false; if (again) { again = false; refresh(); } });
  }
  function changes() {
    if (document.body.dataset.refresh !== "yes" || !window.EventSource) return;
    var es = new EventSource("/api/v1/events");
    es.addEventListener("change", function (e) {
      // A run's page refreshes for its own run (or a new config); lists for any change.
      var summary = document.getElementById("summary"), d = {};
      try { d = JSON.parse(e.data); } catch (x) { /* refresh */ }
      if (summary && d.runs && !d.config && d.runs.indexOf(parseInt(summary.dataset.run, 10)) < 0) return;
      refresh();
    });
    // Tells whoever looks (the browser tests) that changes from now on will arrive.
    // A change between this page's rendering and the feed's (re)connection sends no event:
    // look once on every open.
    es.onopen = function () { document.body.dataset.changes = "open"; refresh(); };
  }

  // --- The log's toolbar: search (count, next, previous), wrap, top and end ----------------
  function toolbar() {
    var pre = document.getElementById("log");
    if (!pre || document.getElementById("log-tools")) return;
    var bar = document.createElement("div");
    bar.id = "log-tools"; bar.className = "log-tools";
    function el(tag, attrs, text) {
      var e = document.createElement(tag);
      for (var k in attrs) e.setAttribute(k, attrs[k]);
      if (text) e.textContent = text;
      bar.appendChild(e);
      return e;
    }
    var input = el("input", { type: "search", id: "log-search", placeholder: "Search the log (/)", "aria-label": "Search the log" });
    var count = el("span", { id: "log-count", "class": "muted small" });
    var prev = el("button", { type: "button", id: "log-prev", title: "Previous match (Shift+Enter)" }, "↑");
    var next = el("button", { type: "button", id: "log-next", title: "Next match (Enter)" }, "↓");
    var wrap = el("button", { type: "button", id: "log-wrap", "aria-pressed": "false" }, "Wrap");
    var times = el("button", { type: "button", id: "log-times", "aria-pressed": "false", title: "Show when each line arrived (t)" }, "Times");
    var top = el("button", { type: "button", id: "log-top" }, "Top");
    var end = el("button", { type: "button", id: "log-bottom" }, "End");
    pre.parentNode.insertBefore(bar, pre);
    var hits = [], at = -1;
    function show(i) {
      if (hits.length === 0) { count.textContent = input.value ? "no match" : ""; return; }
      if (at >= 0 && hits[at]) hits[at].classList.remove("hit-current");
      at = (i + hits.length) % hits.length;
      hits[at].classList.add("hit-current");
      reveal(hits[at]);
      hits[at].scrollIntoView({ block: "center" });
      count.textContent = (at + 1) + " of " + hits.length;
    }
    function search() {
      var q = input.value.toLowerCase();
      for (var i = 0; i < hits.length; i++) hits[i].classList.remove("hit", "hit-current");
      hits = []; at = -1;
      if (q) {
        var lines = pre.querySelectorAll(".line");
        for (var j = 0; j < lines.length; j++) {
          var t = lines[j].textContent, ln = lines[j].querySelector(".ln");
          if (ln) t = t.slice(ln.textContent.length);
          if (t.toLowerCase().indexOf(q) >= 0) { lines[j].classList.add("hit"); hits.push(lines[j]); }
        }
      }
      show(0);
    }
    input.addEventListener("input", search);
    input.addEventListener("keydown", function (e) {
      if (e.key === "Enter") { e.preventDefault(); show(at + (e.shiftKey ? -1 : 1)); }
    });
    prev.addEventListener("click", function () { show(at - 1); });
    next.addEventListener("click", function () { show(at + 1); });
    wrap.addEventListener("click", function () {
      var on = pre.classList.toggle("wrap");
      wrap.setAttribute("aria-pressed", on ? "true" : "false");
    });
    function showTimes(on) {
      pre.classList.toggle("show-ts", on);
      times.setAttribute("aria-pressed", on ? "true" : "false");
      try { window.localStorage.setItem("baton.log.times", on ? "1" : "0"); } catch (x) { /* private mode */ }
    }
    times.addEventListener("click", function () { showTimes(!pre.classList.contains("show-ts")); });
    try { if (window.localStorage.getItem("baton.log.times") === "1") showTimes(true); } catch (x) { /* none */ }
    top.addEventListener("click", function () { pre.scrollIntoView(); });
    end.addEventListener("click", function () { window.scrollTo(0, document.body.scrollHeight); });
  }

  // --- Keyboard shortcuts ------------------------------------------------------------------
  var KEYS = [
    ["/", "Search the log (or the page's filter)"],
    ["j / k", "Next / previous item of the list (runs, jobs)"],
    ["Enter", "Open the selected item"],
    ["r", "Rerun this run"],
    ["t", "Show or hide the log's timestamps"],
    ["?", "Show or hide this help"],
    ["Esc", "Close this help, leave the search"]
  ];
  function help() {
    var h = document.getElementById("kb-help");
    if (h) { h.hidden = !h.hidden; return; }
    h = document.createElement("div");
    h.id = "kb-help"; h.className = "kb-help"; h.setAttribute("role", "dialog");
    h.setAttribute("aria-label", "Keyboard shortcuts");
    var card = document.createElement("div"); card.className = "kb-card";
    var title = document.createElement("h2"); title.textContent = "Keyboard shortcuts";
    var dl = document.createElement("dl");
    KEYS.forEach(function (k) {
      var dt = document.createElement("dt"), kbd = document.createElement("kbd"), dd = document.createElement("dd");
      kbd.textContent = k[0]; dt.appendChild(kbd); dd.textContent = k[1];
      dl.appendChild(dt); dl.appendChild(dd);
    });
    card.appendChild(title); card.appendChild(dl);
    h.appendChild(card);
    h.addEventListener("click", function (e) { if (e.target === h) h.hidden = true; });
    document.body.appendChild(h);
  }
  function listItems() {
    var rows = document.querySelectorAll("main table tbody tr");
    if (rows.length) return rows;
    return document.querySelectorAll("nav.jobs a");
  }
  // The selected item's place: kept when the page redraws its list.
  var kbAt = -1;
  function step(by) {
    var items = listItems();
    if (!items.length) return;
    for (var i = 0; i < items.length; i++) items[i].classList.remove("kb-sel");
    kbAt = Math.max(0, Math.min(items.length - 1, kbAt + by));
    items[kbAt].classList.add("kb-sel");
    items[kbAt].scrollIntoView({ block: "nearest" });
  }
  function reselect() {
    var items = listItems();
    if (kbAt >= 0 && items.length) items[Math.min(kbAt, items.length - 1)].classList.add("kb-sel");
  }
  function shortcuts() {
    document.addEventListener("keydown", function (e) {
      if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
      var a = document.activeElement;
      if (a && /INPUT|TEXTAREA|SELECT/.test(a.tagName)) {
        if (e.key === "Escape") a.blur();
        return;
      }
      var h = document.getElementById("kb-help");
      if (e.key === "Escape" && h) { h.hidden = true; return; }
      if (e.key === "?") { e.preventDefault(); help(); }
      else if (e.key === "/") {
        var q = document.getElementById("log-search") || document.querySelector("main input[type=search], main form input[type=text]");
        if (q) { e.preventDefault(); q.focus(); }
      } else if (e.key === "j" || e.key === "k") { e.preventDefault(); step(e.key === "j" ? 1 : -1); }
      else if (e.key === "Enter" && (!a || a === document.body)) {
        var sel = document.querySelector(".kb-sel");
        var link = sel && (sel.tagName === "A" ? sel : sel.querySelector("a[href]"));
        if (link) { e.preventDefault(); window.location.href = link.href; }
      } else if (e.key === "r") {
        var rerun = document.getElementById("rerun");
        if (rerun) { e.preventDefault(); rerun.click(); }
      } else if (e.key === "t") {
        var tb = document.getElementById("log-times");
        if (tb) { e.preventDefault(); tb.click(); }
      }
    });
  }

  jumpToLine();
  toolbar();
  logSections();
  shortcuts();
  follow();
  changes();
  tick();
})();
