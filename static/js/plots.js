// The notes in figures: how often each pitch sounds, the time from one onset to the next and the
// notes' lengths (in beats where the tempo is known), and the loudness of each bar over the piece.
(function () {
  "use strict";
  var box = document.getElementById("plots");
  var source = document.getElementById("piano-roll-notes");
  if (!box || !source) return;
  var notes = JSON.parse(source.textContent);
  if (notes.length < 2) { box.hidden = true; return; }
  var formData = document.getElementById("roll-form-data");
  var form = formData ? JSON.parse(formData.textContent) : {};
  var beat = form.tempo_bpm ? 60 / form.tempo_bpm : null;
  var unit = beat ? "beats" : "s";
  var NS = "http://www.w3.org/2000/svg";
  var NAMES = ["C", "C\u266f", "D", "E\u266d", "E", "F", "F\u266f", "G", "A\u266d", "A", "B\u266d", "B"];

  function el(name, attrs, text) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Bars of `values` (counts) with `labels` under some of them.
  function bars(id, values, labels, describe) {
    var svg = document.getElementById(id);
    if (!svg) return;
    var W = 320, H = 150, bottom = 18, top = 6;
    var most = Math.max.apply(null, values.concat([1]));
    var width = W / values.length;
    values.forEach(function (v, i) {
      var h = (H - bottom - top) * v / most;
      var rect = el("rect", { x: i * width + 0.5, y: H - bottom - h, width: Math.max(1, width - 1), height: h,
                              "class": "plot-bar" });
      rect.appendChild(el("title", {}, describe(i, v)));
      svg.appendChild(rect);
      if (labels[i]) svg.appendChild(el("text", { x: i * width + width / 2, y: H - 4, "class": "plot-label" }, labels[i]));
    });
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  }

  // Pitches: one bar per semitone from the lowest to the highest, named at each C.
  var low = 127, high = 0;
  notes.forEach(function (n) { low = Math.min(low, n[0]); high = Math.max(high, n[0]); });
  var pitchCounts = [];
  for (var p = low; p <= high; p++) pitchCounts.push(0);
  notes.forEach(function (n) { pitchCounts[n[0] - low] += n[2]; });  // weighted by how long each sounds
  bars("plot-pitch", pitchCounts, pitchCounts.map(function (_, i) {
    var q = low + i; return q % 12 === 0 ? "C" + (Math.floor(q / 12) - 1) : "";
  }), function (i, v) {
    var q = low + i; return NAMES[q % 12] + (Math.floor(q / 12) - 1) + ": sounds " + v.toFixed(1) + " s";
  });

  // Times between onsets and note lengths, on a scale of musical values.
  // Each bin is named by its value and reaches halfway to its neighbours' (the first takes all shorter).
  var EDGES = beat ? [0.29, 0.42, 0.58, 0.71, 0.875, 1.25, 1.75, 2.5, 3.5, 1e9]
    : [0.15, 0.25, 0.375, 0.525, 0.75, 1.05, 1.5, 2.15, 2.75, 1e9];
  var LABELS = beat ? ["\u00bc", "\u2153", "\u00bd", "\u2154", "\u00be", "1", "1\u00bd", "2", "3", "4+"]
    : ["0.1", "0.2", "0.3", "0.4", "0.6", "0.9", "1.2", "1.8", "2.5", "3+"];
  function histogram(values) {
    var counts = EDGES.map(function () { return 0; });
    values.forEach(function (v) {
      var x = beat ? v / beat : v;
      for (var i = 0; i < EDGES.length; i++) { if (x < EDGES[i]) { counts[i]++; return; } }
    });
    return counts;
  }
  var onsets = [];
  notes.forEach(function (n) { if (!onsets.length || n[1] - onsets[onsets.length - 1] > 1e-3) onsets.push(n[1]); });
  var steps = onsets.slice(1).map(function (t, i) { return t - onsets[i]; });
  function describeAs(kind) {
    return function (i, v) { return kind + " of about " + LABELS[i] + " " + unit + ": " + v; };
  }
  bars("plot-step", histogram(steps), LABELS, describeAs("times between onsets"));
  bars("plot-duration", histogram(notes.map(function (n) { return n[2]; })), LABELS, describeAs("notes"));

  // Loudness: the mean velocity of each bar (or each second), over the piece.
  var svg = document.getElementById("plot-velocity");
  if (svg) {
    var span = form.bar_beats && beat ? form.bar_beats * beat : 1;
    var end = notes.reduce(function (e, n) { return Math.max(e, n[1]); }, 0);
    var count = Math.max(1, Math.ceil((end + 1e-6) / span));
    var sums = [], ns = [];
    for (var b = 0; b < count; b++) { sums.push(0); ns.push(0); }
    notes.forEach(function (n) { var k = Math.min(count - 1, Math.floor(n[1] / span)); sums[k] += n[3]; ns[k]++; });
    var W = 320, H = 150, points = [];
    for (var k = 0; k < count; k++) {
      if (!ns[k]) continue;
      var x = count > 1 ? 8 + (W - 16) * k / (count - 1) : W / 2;
      points.push(x.toFixed(1) + "," + (H - 18 - (H - 30) * (sums[k] / ns[k]) / 127).toFixed(1));
    }
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.appendChild(el("line", { x1: 0, x2: W, y1: H - 18, y2: H - 18, "class": "plot-axis" }));
    svg.appendChild(el("polyline", { points: points.join(" "), "class": "plot-line" }));
    svg.appendChild(el("text", { x: 4, y: H - 4, "class": "plot-label start" }, span === 1 ? "seconds" : "bar 1"));
    svg.appendChild(el("text", { x: W - 4, y: H - 4, "class": "plot-label end" }, span === 1 ? end.toFixed(0) + " s" : "bar " + count));
  }
})();
