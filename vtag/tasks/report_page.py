"""The HTML, CSS and script of the batch report page (vtag.tasks.report fills in @TITLE@ and @DATA@).

The script reads the embedded JSON, keeps the filtered and sorted list of results, and appends cards
in batches of CARDS_PER_BATCH whenever the sentinel below the last card scrolls near the viewport
(IntersectionObserver), so only what has been scrolled to is ever in the DOM. All data goes in
through textContent / attributes, never innerHTML.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>@TITLE@</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
  header { position: sticky; top: 0; z-index: 1; background: #fff; border-bottom: 1px solid #d8dce3; padding: 10px 16px; }
  h1 { font-size: 18px; margin: 0 0 4px; }
  .controls { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; margin-top: 6px; }
  .controls input[type=search] { width: 280px; padding: 4px 6px; }
  .warning { color: #9a5b00; font-weight: 600; }
  #summary, #count { color: #555; }
  #top-tags button, .tag { border: 1px solid #c9d3e6; background: #eef3fb; border-radius: 10px; padding: 1px 8px;
                           font: inherit; font-size: 12px; cursor: pointer; }
  #cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; padding: 16px; }
  .card { background: #fff; border: 1px solid #d8dce3; border-radius: 6px; overflow: hidden; }
  .card.failed { border-color: #e3a0a0; background: #fff6f6; }
  .card .thumb { display: block; width: 100%; aspect-ratio: 16 / 9; object-fit: cover; background: #dfe3ea; }
  .card .nothumb { display: flex; align-items: center; justify-content: center; width: 100%; aspect-ratio: 16 / 9;
                   background: #dfe3ea; color: #778; font-size: 12px; }
  .card .body { padding: 8px 10px; }
  .card .name { font-weight: 600; overflow-wrap: anywhere; }
  .card .path { color: #778; font-size: 11px; overflow-wrap: anywhere; }
  .card ol { margin: 6px 0 0; padding-left: 0; list-style: none; }
  .card li { display: flex; gap: 6px; align-items: baseline; }
  .card li .score { margin-left: auto; font-variant-numeric: tabular-nums; }
  .card li .vertical { color: #778; font-size: 11px; }
  .card .error { color: #a11; overflow-wrap: anywhere; white-space: pre-wrap; margin-top: 6px; }
  .card .note { color: #9a5b00; font-size: 12px; }
  #sentinel { height: 40px; }
</style>
</head>
<body>
<header>
  <h1 id="title"></h1>
  <div id="summary"></div>
  <div class="controls">
    <input id="filter" type="search" list="tag-list" placeholder="filter by tag (or vertical)" aria-label="filter by tag">
    <datalist id="tag-list"></datalist>
    <label>sort <select id="sort" aria-label="sort">
      <option value="name">by name</option>
      <option value="score">by top score</option>
      <option value="failed">failures first</option>
    </select></label>
    <label><input type="checkbox" id="failed-only"> failures only</label>
    <span id="count" aria-live="polite"></span>
  </div>
  <div id="top-tags"></div>
</header>
<main id="cards"></main>
<div id="sentinel"></div>
<script type="application/json" id="vtag-data">@DATA@</script>
<script>
(function () {
  "use strict";
  var CARDS_PER_BATCH = 48;
  var THUMB_PREFIX = "data:image/jpeg;base64,";
  var data = JSON.parse(document.getElementById("vtag-data").textContent);
  var results = data.results;
  var cards = document.getElementById("cards");
  var filterBox = document.getElementById("filter");
  var sortBox = document.getElementById("sort");
  var failedOnly = document.getElementById("failed-only");
  var countLine = document.getElementById("count");
  var view = [];
  var shown = 0;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setFilter(value) {
    filterBox.value = value;
    refresh();
    window.scrollTo(0, 0);
    fill();
  }

  function card(r) {
    var node = el("article", r.error ? "card failed" : "card");
    node.dataset.path = r.path;
    if (r.thumbnail && r.thumbnail.indexOf(THUMB_PREFIX) === 0) {
      var img = el("img", "thumb");
      img.alt = "keyframe of " + r.name;
      img.loading = "lazy";
      img.src = r.thumbnail;
      node.appendChild(img);
    } else {
      node.appendChild(el("div", "nothumb", r.error ? "failed" : "no keyframe"));
    }
    var body = el("div", "body");
    body.appendChild(el("div", "name", r.name));
    if (r.path !== r.name) body.appendChild(el("div", "path", r.path));
    if (r.error) {
      body.appendChild(el("div", "error", r.error));
    } else {
      var list = el("ol");
      r.labels.forEach(function (label) {
        var item = el("li");
        var tag = el("button", "tag", label.name);
        tag.type = "button";
        tag.title = "show only videos tagged " + label.name;
        tag.addEventListener("click", function () { setFilter(label.name); });
        item.appendChild(tag);
        if (label.vertical) item.appendChild(el("span", "vertical", label.vertical));
        item.appendChild(el("span", "score", label.score.toFixed(3)));
        list.appendChild(item);
      });
      body.appendChild(list);
      if (r.missing.length) body.appendChild(el("div", "note", "no " + r.missing.join(" or ")));
    }
    node.appendChild(body);
    return node;
  }

  function matches(r, query) {
    if (failedOnly.checked && !r.error) return false;
    if (!query) return true;
    return r.labels.some(function (label) {
      return label.name.toLowerCase().indexOf(query) !== -1 ||
             (label.vertical || "").toLowerCase().indexOf(query) !== -1;
    });
  }

  function topScore(r) { return r.labels.length ? r.labels[0].score : -1; }
  function byName(a, b) { return a.path < b.path ? -1 : a.path > b.path ? 1 : 0; }
  var ORDERS = {
    name: byName,
    score: function (a, b) { return topScore(b) - topScore(a) || byName(a, b); },
    failed: function (a, b) { return (b.error ? 1 : 0) - (a.error ? 1 : 0) || byName(a, b); }
  };

  function more() {
    var end = Math.min(view.length, shown + CARDS_PER_BATCH);
    var batch = document.createDocumentFragment();
    for (; shown < end; shown++) batch.appendChild(card(view[shown]));
    cards.appendChild(batch);
    cards.dataset.shown = String(shown);
  }

  function refresh() {
    var query = filterBox.value.trim().toLowerCase();
    view = results.filter(function (r) { return matches(r, query); }).sort(ORDERS[sortBox.value] || byName);
    shown = 0;
    cards.textContent = "";
    cards.dataset.matching = String(view.length);
    countLine.textContent = view.length + " of " + results.length + " videos";
    more();
  }

  function header() {
    document.getElementById("title").textContent = data.title;
    var failed = results.filter(function (r) { return r.error; }).length;
    var summary = document.getElementById("summary");
    summary.textContent = results.length + " videos: " + (results.length - failed) + " tagged, " + failed +
      " failed" + (data.models.length ? "; model " + data.models.join(", ") : "");
    if (data.random_weights) {
      summary.appendChild(el("span", "warning", "  (random weights: the tags are NOT meaningful)"));
    }
    var options = document.createDocumentFragment();
    data.tags.forEach(function (pair) {
      var option = el("option");
      option.value = pair[0];
      option.label = pair[0] + " (" + pair[1] + ")";
      options.appendChild(option);
    });
    document.getElementById("tag-list").appendChild(options);
    var top = document.getElementById("top-tags");
    data.tags.slice(0, 12).forEach(function (pair) {
      var button = el("button", null, pair[0] + " " + pair[1]);
      button.type = "button";
      button.addEventListener("click", function () { setFilter(pair[0]); });
      top.appendChild(button);
    });
  }

  // Cards are added while the sentinel below the last one is near the viewport. The observer
  // reports changes only, so after a batch (or a refresh that left the sentinel in view) fill()
  // checks again on the next frame until the sentinel is out of reach.
  var sentinel = document.getElementById("sentinel");
  var MARGIN = 800;
  function fill() {
    if (shown < view.length && sentinel.getBoundingClientRect().top < window.innerHeight + MARGIN) {
      more();
      requestAnimationFrame(fill);
    }
  }

  header();
  filterBox.addEventListener("input", function () { refresh(); fill(); });
  sortBox.addEventListener("change", function () { refresh(); fill(); });
  failedOnly.addEventListener("change", function () { refresh(); fill(); });
  refresh();
  if ("IntersectionObserver" in window) {
    new IntersectionObserver(function (seen) {
      if (seen.some(function (e) { return e.isIntersecting; })) fill();
    }, { rootMargin: MARGIN + "px" }).observe(sentinel);
  } else {
    while (shown < view.length) more();
  }
})();
</script>
</body>
</html>
"""
