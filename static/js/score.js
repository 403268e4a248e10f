// The engraved score: fetched from the piece's own (permission-checked) URL and shown in the page,
// the bar being played lit as the audio plays, and a click on a bar plays from it. While the score
// is still being engraved, the page asks again every few seconds and shows it once it is there.
(function () {
  "use strict";
  var audio = document.querySelector(".player audio");

  function follow(view, barTimes) {
    var measures = view.querySelectorAll("g.measure");
    if (!measures.length) return;
    var lit = -1;
    function barAt(seconds) {
      var low = 0, high = Math.min(barTimes.length, measures.length) - 1;
      if (high < 0) return -1;
      while (low < high) {  // the last bar that starts at or before `seconds`
        var mid = (low + high + 1) >> 1;
        if (barTimes[mid] <= seconds + 1e-3) low = mid; else high = mid - 1;
      }
      return low;
    }
    function light(index) {
      if (index === lit) return;
      if (lit >= 0 && measures[lit]) measures[lit].classList.remove("playing");
      lit = index;
      if (lit >= 0 && measures[lit]) {
        measures[lit].classList.add("playing");
        var box = measures[lit].getBoundingClientRect(), frame = view.getBoundingClientRect();
        if (!audio.paused && (box.top < frame.top || box.bottom > frame.bottom)) {
          view.scrollTop += box.top - frame.top - 24;  // keep the bar being played in sight
        }
      }
    }
    if (audio) {
      audio.addEventListener("timeupdate", function () { light(barAt(audio.currentTime)); });
      audio.addEventListener("seeked", function () { light(barAt(audio.currentTime)); });
    }
    Array.prototype.forEach.call(measures, function (measure, index) {
      if (index < barTimes.length) measure.classList.add("seekable");
    });
    // A bar is mostly white space, which an SVG group does not catch: the click finds the bar whose
    // box holds it.
    view.addEventListener("click", function (event) {
      if (!audio) return;
      for (var index = 0; index < Math.min(measures.length, barTimes.length); index++) {
        var box = measures[index].getBoundingClientRect();
        if (event.clientX >= box.left && event.clientX <= box.right &&
            event.clientY >= box.top && event.clientY <= box.bottom) {
          audio.currentTime = barTimes[index];
          light(index);
          audio.play().catch(function () {});
          return;
        }
      }
    });
  }

  function show(view, text) {
    var doc = new DOMParser().parseFromString(text, "image/svg+xml");
    var svg = doc.documentElement;
    if (!svg || svg.nodeName.toLowerCase() !== "svg") return;
    // An engraving has no scripts; drop any element that could run one before it joins the page.
    Array.prototype.forEach.call(svg.querySelectorAll("script, foreignObject"), function (el) { el.remove(); });
    view.replaceChildren(document.importNode(svg, true));
    var times = document.getElementById("score-bar-times");
    follow(view, times ? JSON.parse(times.textContent) : []);
  }

  var view = document.getElementById("score-view");
  if (view) {
    fetch(view.dataset.svgUrl, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (text) { show(view, text); })
      .catch(function () { view.textContent = "The score could not be loaded."; });
    return;
  }
  var pending = document.getElementById("score-pending");
  if (!pending) return;
  var tries = 0;
  (function ask() {
    if (++tries > 40) return;
    fetch(pending.dataset.svgUrl, { credentials: "same-origin", method: "HEAD" }).then(function (r) {
      if (r.ok) window.location.reload(); else setTimeout(ask, 3000);
    }).catch(function () { setTimeout(ask, 3000); });
  })();
})();
