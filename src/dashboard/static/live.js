// Live refresh for the incidents page: every few seconds, fetch the same URL and, when the
// list changed, swap in the server-rendered list. The page works fully without this script.
// It never builds markup from data: it only moves nodes that the server rendered (and
// escaped), parsed inertly with DOMParser (scripts in parsed documents do not run).
(function () {
  "use strict";
  var PERIOD_MS = 3000;
  var region = document.getElementById("live-region");
  var status = document.getElementById("live-status");
  if (!region || !window.fetch || !window.DOMParser) { return; }
  var pending = null;

  function say(text) { if (status) { status.textContent = text; } }

  function swap(next) {
    var before = region.querySelectorAll("tr.incident").length;
    region.replaceChildren.apply(region, Array.prototype.slice.call(next.childNodes).map(function (n) {
      return document.importNode(n, true);
    }));
    region.setAttribute("data-version", next.getAttribute("data-version") || "");
    var after = region.querySelectorAll("tr.incident").length;
    if (after > before) { say((after - before) + " new incident" + (after - before === 1 ? "" : "s")); }
  }

  function poll() {
    if (document.hidden) { return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.redirected || !response.ok) { throw new Error("session"); }
        return response.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var next = doc.getElementById("live-region");
        if (!next) { throw new Error("session"); }
        if (next.getAttribute("data-version") === region.getAttribute("data-version")) { return; }
        // Do not pull the list from under the keyboard: wait until focus leaves it.
        if (region.contains(document.activeElement)) { pending = next; say("New data: leave the list to update"); return; }
        swap(next);
      })
      .catch(function () {
        say("Live updates stopped: reload the page");
        window.clearInterval(timer);
      });
  }

  region.addEventListener("focusout", function () {
    window.setTimeout(function () {
      if (pending && !region.contains(document.activeElement)) { swap(pending); pending = null; }
    }, 0);
  });
  var timer = window.setInterval(poll, PERIOD_MS);
})();
