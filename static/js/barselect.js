// Regenerate bars: dragging across the piano roll picks whole bars and fills the form's first
// and last bar. Bars come from the stored form (bar_beats, and each phrase's beats and seconds)
// on the roll's own time axis (the end of the last note).
(function () {
  "use strict";
  var canvas = document.getElementById("piano-roll");
  var formData = document.getElementById("piece-form-data");
  var notesData = document.getElementById("piano-roll-notes");
  var first = document.getElementById("first-bar");
  var last = document.getElementById("last-bar");
  if (!canvas || !formData || !notesData || !first || !last) return;
  var form = JSON.parse(formData.textContent);
  var notes = JSON.parse(notesData.textContent);
  var phrases = form.phrases || [];
  if (!phrases.length || !form.bars) return;
  var beats = 0, seconds = 0;
  phrases.forEach(function (p) { beats += p.end - p.start; seconds += p.end_s - p.start_s; });
  if (beats <= 0 || seconds <= 0) return;
  var perBeat = seconds / beats;
  var barSeconds = (form.bar_beats || 4) * perBeat;
  var origin = phrases[0].start_s - phrases[0].start * perBeat;
  var end = Math.max(1, notes.reduce(function (e, n) { return Math.max(e, n[1] + n[2]); }, 0));

  var wrap = document.createElement("div");
  wrap.className = "roll-wrap";
  canvas.parentNode.insertBefore(wrap, canvas);
  wrap.appendChild(canvas);
  var band = document.createElement("div");
  band.className = "bar-selection";
  band.setAttribute("aria-hidden", "true");
  wrap.appendChild(band);
  canvas.classList.add("selectable");
  canvas.title = "Drag across bars to regenerate them";

  function barAt(clientX) {
    var box = canvas.getBoundingClientRect();
    var t = Math.max(0, Math.min(1, (clientX - box.left) / box.width)) * end;
    return Math.max(1, Math.min(form.bars, Math.floor((t - origin) / barSeconds + 1e-6) + 1));
  }

  function show(a, b) {
    var lo = Math.min(a, b), hi = Math.max(a, b);
    first.value = lo;
    last.value = hi;
    band.style.display = "block";
    band.style.left = (100 * (origin + (lo - 1) * barSeconds) / end) + "%";
    band.style.width = (100 * (hi - lo + 1) * barSeconds / end) + "%";
  }

  function fromInputs() {
    var a = parseInt(first.value, 10), b = parseInt(last.value, 10);
    if (a >= 1 && b >= a && b <= form.bars) show(a, b); else band.style.display = "none";
  }

  var anchor = null;
  canvas.addEventListener("pointerdown", function (event) {
    anchor = barAt(event.clientX);
    canvas.setPointerCapture(event.pointerId);
    show(anchor, anchor);
  });
  canvas.addEventListener("pointermove", function (event) {
    if (anchor !== null) show(anchor, barAt(event.clientX));
  });
  function release(event) {
    if (anchor === null) return;
    show(anchor, barAt(event.clientX));
    anchor = null;
  }
  canvas.addEventListener("pointerup", release);
  canvas.addEventListener("pointercancel", function () { anchor = null; });
  first.addEventListener("input", fromInputs);
  last.addEventListener("input", fromInputs);
  fromInputs();
})();
