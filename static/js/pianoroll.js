// The piano roll of a piece: its notes ([pitch, start_s, duration_s, velocity, voice?]) against a
// pitch axis (note names at each C, black keys shaded) and a time axis in bars and beats, with the
// form and chord lanes above on the same axis. Click to play from a point, drag to scrub (or, on
// your own piece, to pick bars to regenerate), zoom and scroll for long pieces; the playhead follows
// the audio. Keyboard: arrows move a beat (with Shift a bar), Home and End, + and - zoom, 0 fits,
// space plays and pauses. Each voice has its own colour (a palette that colour-blind readers can
// tell apart); notes from a MIDI file the piece continues are drawn hollow.
(function () {
  "use strict";
  var canvas = document.getElementById("piano-roll");
  var source = document.getElementById("piano-roll-notes");
  if (!canvas || !source) return;
  var notes = JSON.parse(source.textContent);
  var formData = document.getElementById("roll-form-data");
  var form = formData ? JSON.parse(formData.textContent) : {};
  var chordData = document.getElementById("chord-lane-data");
  var chords = chordData ? JSON.parse(chordData.textContent) : [];
  var primerEnd = parseFloat(canvas.dataset.primerEnd || "0");
  var roll = document.getElementById("roll");
  var scroller = document.getElementById("roll-scroll");
  var content = document.getElementById("roll-content");
  var info = document.getElementById("roll-info");
  var audio = document.querySelector(".player audio");
  var css = getComputedStyle(document.documentElement);
  var COLORS = {
    background: css.getPropertyValue("--roll-bg").trim() || "#f6f5fb",
    blackKey: "rgba(30, 30, 60, 0.055)",
    grid: css.getPropertyValue("--roll-grid").trim() || "#e4e1f2",
    bar: "rgba(40, 40, 80, 0.28)",
    beat: "rgba(40, 40, 80, 0.08)",
    text: "#4a4760",
    single: css.getPropertyValue("--accent").trim() || "#5b4bdb",
    playhead: "#111",
  };
  // Okabe and Ito's palette: distinct under the common colour blindnesses.
  var VOICE_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#8A6D00", "#000000"];
  var voices = Array.isArray(form.voices) ? form.voices : [];
  var hasVoices = voices.length > 1 && notes.length && notes[0].length > 4;
  var pieceEnd = notes.reduce(function (end, n) { return Math.max(end, n[1] + n[2]); }, 0);
  var span = Math.max(pieceEnd, 1);
  var AXIS = 20;       // the time axis strip at the top of the canvas, in CSS pixels
  var MAX_PPS = 400;   // pixels per second at the closest zoom
  var keysWidth = 40;
  var pps = 1;         // pixels per second now
  var fit = true;      // the whole piece fills the width (until the user zooms)

  // Bars: from the form the piece was written to (its phrases' beats and seconds), else its tempo.
  var bars = (function () {
    var phrases = form.phrases || [];
    var beatsPerBar = form.bar_beats;
    if (!beatsPerBar && form.time_signature) {
      var parts = String(form.time_signature).split("/");
      beatsPerBar = 4 * parseInt(parts[0], 10) / parseInt(parts[1], 10);
    }
    var perBeat = null, origin = 0;
    if (phrases.length) {
      var beats = 0, seconds = 0;
      phrases.forEach(function (p) { beats += p.end - p.start; seconds += p.end_s - p.start_s; });
      if (beats > 0 && seconds > 0) {
        perBeat = seconds / beats;
        origin = phrases[0].start_s - phrases[0].start * perBeat;
      }
    }
    if (perBeat === null && form.tempo_bpm) perBeat = 60 / form.tempo_bpm;
    if (!perBeat || !beatsPerBar) return null;
    var numerator = form.time_signature ? parseInt(String(form.time_signature).split("/")[0], 10) : 4;
    var denominator = form.time_signature ? parseInt(String(form.time_signature).split("/")[1], 10) : 4;
    // Compound metres (6/8, 9/8, 12/8) are felt in dotted beats.
    var pulse = (denominator === 8 && numerator % 3 === 0 && numerator > 3) ? 1.5 : 4 / denominator;
    return { origin: origin, bar: beatsPerBar * perBeat, beat: pulse * perBeat, count: form.bars || 0 };
  })();

  function barOf(t) {
    return bars ? Math.floor((t - bars.origin) / bars.bar + 1e-6) + 1 : 0;
  }
  function barStart(number) { return bars.origin + (number - 1) * bars.bar; }

  // ---- geometry ----
  function viewWidth() { return scroller.clientWidth; }
  function timeWidth() { return Math.max(1, viewWidth() - keysWidth); }
  function layout(keepTime) {
    keysWidth = viewWidth() < 500 ? 32 : 40;
    var minimum = timeWidth() / span;
    if (fit) pps = minimum;
    pps = Math.max(minimum, Math.min(MAX_PPS, pps));
    content.style.width = (keysWidth + span * pps) + "px";
    canvas.style.width = viewWidth() + "px";
    content.style.setProperty("--keys", keysWidth + "px");
    placeLanes();
    if (keepTime !== undefined) {
      scroller.scrollLeft = Math.max(0, keepTime.time * pps - keepTime.offset);
    }
    draw();
  }
  function timeAt(clientX) {
    var box = scroller.getBoundingClientRect();
    return (clientX - box.left - keysWidth + scroller.scrollLeft) / pps;
  }
  function xOf(t) {  // a time's x on the screen (client coordinates)
    return scroller.getBoundingClientRect().left + keysWidth + t * pps - scroller.scrollLeft;
  }

  // ---- lanes ----
  var SYMBOLS = {
    "major triad": "", "minor triad": "m", "diminished triad": "dim", "augmented triad": "aug",
    "dominant seventh chord": "7", "major seventh chord": "maj7", "minor seventh chord": "m7",
    "half-diminished seventh chord": "m7\u266d5", "diminished seventh chord": "dim7",
    "minor-augmented tetrachord": "m(maj7)",
    "major-ninth chord": "maj9", "dominant-ninth": "9", "minor-ninth chord": "m9",
  };
  function accidentals(root) { return root.replace(/#/g, "\u266f").replace(/(.)b/g, "$1\u266d"); }
  function chordSymbol(label) {
    var space = label.indexOf(" ");
    var root = accidentals(label.slice(0, space)), name = label.slice(space + 1);
    return Object.prototype.hasOwnProperty.call(SYMBOLS, name) ? root + SYMBOLS[name] : null;
  }
  function say(text) { if (info) info.textContent = text; }

  var chordLane = document.getElementById("chord-lane");
  var formLane = document.getElementById("form-lane");
  var chordSpans = [];
  if (chordLane) {
    chords.forEach(function (change, i) {
      var label = change[1];
      if (!label) return;  // no chord sounds here: a gap
      var until = i + 1 < chords.length ? chords[i + 1][0] : pieceEnd;
      var chord = document.createElement("span");
      var symbol = chordSymbol(label);
      chord.className = symbol === null ? "chord other" : "chord";
      chord.setAttribute("role", "listitem");
      chord.textContent = symbol === null ? accidentals(label.slice(0, label.indexOf(" "))) : symbol;
      chord.title = label + " at " + change[0].toFixed(1) + " s";
      chord.setAttribute("aria-label", chord.title);
      chord.addEventListener("click", function () {  // touch screens have no tooltips: tap to read it
        say(label + " at " + change[0].toFixed(1) + " s" + (bars ? " (bar " + barOf(change[0]) + ")" : ""));
      });
      chordLane.appendChild(chord);
      chordSpans.push({ el: chord, start: change[0], end: until });
    });
  }
  var phraseBlocks = [];
  if (formLane && form.phrases) {
    form.phrases.forEach(function (phrase) {
      var block = document.createElement("span");
      var hue = (phrase.letter.charCodeAt(0) - 65) % 6;
      block.className = "phrase letter-" + hue + (phrase.repeat_of !== null ? " repeat" : "");
      block.setAttribute("role", "listitem");
      block.textContent = phrase.letter + (phrase.varied ? "\u2032" : "");
      block.title = "Phrase " + phrase.letter + ", bars " + phrase.first_bar + "\u2013" + phrase.last_bar +
        (phrase.repeat_of !== null ? (phrase.ornamented ? " (an ornamented return: its strong beats as before)" :
          phrase.varied ? " (a repeat with its own ending)" : " (a repeat)") : "") +
        (phrase.cadence ? ", closing on a cadence" : "");
      block.addEventListener("click", function () { say(block.title); });
      formLane.appendChild(block);
      phraseBlocks.push({ el: block, start: phrase.start_s, end: phrase.end_s });
    });
  }
  function place(item) {
    item.el.style.left = (item.start * pps) + "px";
    item.el.style.width = Math.max(0, (item.end - item.start) * pps) + "px";
  }
  function placeLanes() {
    [chordLane, formLane].forEach(function (lane) { if (lane) lane.style.width = (span * pps) + "px"; });
    phraseBlocks.forEach(function (item) {
      place(item);
      item.el.classList.toggle("narrow", (item.end - item.start) * pps < 16);
    });
    // Chord names never overlap: a label shows where it has room after the last one shown, the rest
    // keep their span (tap or hover names it).
    var shownUntil = -Infinity;
    chordSpans.forEach(function (item) {
      place(item);
      var left = item.start * pps;
      var width = item.el.scrollWidth || 24;
      item.labelWidth = item.labelWidth || measure(item.el.textContent);
      // A passing sonority (no common symbol) is named only where its own span holds the name.
      var roomy = !item.el.classList.contains("other") || (item.end - item.start) * pps >= item.labelWidth + 6;
      var fits = roomy && left >= shownUntil + 4;
      item.el.classList.toggle("thin", !fits);
      if (fits) shownUntil = left + Math.max(item.labelWidth + 6, Math.min(width, item.labelWidth + 6));
    });
  }
  var measurer = document.createElement("canvas").getContext("2d");
  function measure(text) {
    measurer.font = "600 12px system-ui, sans-serif";
    return measurer.measureText(text).width;
  }

  // ---- drawing ----
  var range = (function () {
    var low = 127, high = 0;
    notes.forEach(function (n) { low = Math.min(low, n[0]); high = Math.max(high, n[0]); });
    if (!notes.length) { low = 60; high = 72; }
    return { low: Math.max(0, low - 2), high: Math.min(127, high + 2) };
  })();
  var NAMES = ["C", "C\u266f", "D", "E\u266d", "E", "F", "F\u266f", "G", "A\u266d", "A", "B\u266d", "B"];
  var BLACK = [false, true, false, true, false, false, true, false, true, false, true, false];

  function colourOf(n) {
    if (!hasVoices) return COLORS.single;
    return VOICE_COLORS[(n[4] || 0) % VOICE_COLORS.length];
  }

  function draw() {
    var ratio = window.devicePixelRatio || 1;
    var width = viewWidth(), height = canvas.clientHeight;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = COLORS.background;
    ctx.fillRect(0, 0, width, height);
    var rows = range.high - range.low + 1;
    var rowHeight = (height - AXIS) / rows;
    var scroll = scroller.scrollLeft;
    var t0 = scroll / pps, t1 = (scroll + width - keysWidth) / pps;
    function x(t) { return keysWidth + t * pps - scroll; }
    function y(p) { return height - (p - range.low + 1) * rowHeight; }

    // Black keys shaded across the roll, a line at each C.
    for (var p = range.low; p <= range.high; p++) {
      if (BLACK[p % 12]) { ctx.fillStyle = COLORS.blackKey; ctx.fillRect(keysWidth, y(p), width, rowHeight); }
      if (p % 12 === 0) {
        ctx.strokeStyle = COLORS.grid; ctx.lineWidth = 1;
        ctx.beginPath(); ctx.moveTo(keysWidth, Math.round(y(p) + rowHeight) + 0.5);
        ctx.lineTo(width, Math.round(y(p) + rowHeight) + 0.5); ctx.stroke();
      }
    }
    // Bars and beats; the numbers thinned so that they never crowd.
    ctx.font = "600 11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    if (bars && bars.bar > 0) {
      var every = 1;
      while (every * bars.bar * pps < 30) every *= 2;
      var showBeats = bars.beat * pps >= 12;
      var first = barOf(Math.max(0, t0)) - 1, last = barOf(t1) + 1;
      for (var b = first; b <= last; b++) {
        var start = barStart(b);
        if (start > pieceEnd + 1e-6) break;
        if (showBeats) {
          ctx.strokeStyle = COLORS.beat;
          for (var beat = start + bars.beat; beat < start + bars.bar - 1e-6; beat += bars.beat) {
            if (beat < 0) continue;
            ctx.beginPath(); ctx.moveTo(Math.round(x(beat)) + 0.5, AXIS); ctx.lineTo(Math.round(x(beat)) + 0.5, height); ctx.stroke();
          }
        }
        if (start < -1e-6) continue;
        ctx.strokeStyle = COLORS.bar;
        ctx.beginPath(); ctx.moveTo(Math.round(x(start)) + 0.5, AXIS - 6); ctx.lineTo(Math.round(x(start)) + 0.5, height); ctx.stroke();
        if (b >= 1 && (b - 1) % every === 0) {
          ctx.fillStyle = COLORS.text;
          ctx.fillText(String(b), x(start) + 3, AXIS / 2);
        }
      }
    } else {  // no bars known: seconds
      var step = 1;
      while (step * pps < 40) step *= 2;
      for (var s = Math.floor(t0 / step) * step; s <= t1; s += step) {
        ctx.strokeStyle = COLORS.beat;
        ctx.beginPath(); ctx.moveTo(Math.round(x(s)) + 0.5, AXIS - 6); ctx.lineTo(Math.round(x(s)) + 0.5, height); ctx.stroke();
        ctx.fillStyle = COLORS.text; ctx.fillText(s + " s", x(s) + 3, AXIS / 2);
      }
    }
    // The notes: louder ones more opaque; from the MIDI file it continues, hollow.
    notes.forEach(function (n) {
      if (n[1] > t1 || n[1] + n[2] < t0) return;
      var left = x(n[1]), top = y(n[0]);
      var w = Math.max(2, n[2] * pps - 1), h = Math.max(2, rowHeight - 1);
      ctx.globalAlpha = 0.5 + 0.5 * (n[3] / 127);
      var colour = colourOf(n);
      if (primerEnd > 0 && n[1] < primerEnd - 1e-3) {
        ctx.strokeStyle = colour; ctx.lineWidth = 1.5;
        ctx.strokeRect(left + 0.75, top + 0.75, Math.max(1, w - 1.5), Math.max(1, h - 1.5));
      } else {
        ctx.fillStyle = colour;
        ctx.fillRect(left, top, w, h);
      }
    });
    ctx.globalAlpha = 1;
    // The pitch axis, over everything at the left: the keys, and a name at each C.
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, keysWidth, height);
    for (var q = range.low; q <= range.high; q++) {
      if (BLACK[q % 12]) { ctx.fillStyle = "#3b3950"; ctx.fillRect(keysWidth * 0.45, y(q), keysWidth * 0.55, rowHeight); }
      if (q % 12 === 0 || (rowHeight >= 11 && q === range.low)) {
        ctx.fillStyle = COLORS.text;
        ctx.font = (rowHeight >= 9 ? 11 : 10) + "px system-ui, sans-serif";
        ctx.fillText(NAMES[q % 12] + (Math.floor(q / 12) - 1), 2, y(q) + rowHeight / 2);
      }
    }
    ctx.strokeStyle = COLORS.grid;
    ctx.beginPath(); ctx.moveTo(keysWidth + 0.5, 0); ctx.lineTo(keysWidth + 0.5, height); ctx.stroke();
    // The playhead.
    if (audio && (audio.currentTime > 0 || !audio.paused)) {
      var px = x(audio.currentTime);
      if (px >= keysWidth) {
        ctx.strokeStyle = COLORS.playhead; ctx.lineWidth = 2;
        ctx.beginPath(); ctx.moveTo(px, 0); ctx.lineTo(px, height); ctx.stroke();
        ctx.fillStyle = COLORS.playhead;
        ctx.beginPath(); ctx.moveTo(px - 5, 0); ctx.lineTo(px + 5, 0); ctx.lineTo(px, 7); ctx.fill();
      }
    }
  }

  // ---- playback ----
  function seek(t) {
    if (!audio) return;
    t = Math.max(0, Math.min(t, audio.duration || pieceEnd));
    audio.currentTime = t;
    say("At " + t.toFixed(1) + " s" + (bars ? ", bar " + barOf(t) : ""));
    follow(true);
    draw();
  }
  function follow(always) {  // keep the playhead in sight: turn the page when it leaves the view
    if (!audio || fit) return;
    var left = audio.currentTime * pps, view = timeWidth();
    if (always || !audio.paused) {
      if (left < scroller.scrollLeft || left > scroller.scrollLeft + view - 20) {
        scroller.scrollLeft = Math.max(0, left - view * 0.1);
      }
    }
  }
  var frame = null;
  function tick() {
    follow(false);
    draw();
    frame = audio && !audio.paused ? requestAnimationFrame(tick) : null;
  }
  if (audio) {
    audio.addEventListener("play", function () { if (frame === null) frame = requestAnimationFrame(tick); });
    audio.addEventListener("timeupdate", function () { if (frame === null) draw(); });
    audio.addEventListener("seeked", draw);
  }

  // ---- zoom ----
  function zoom(factor, aroundClientX) {
    var anchorTime, offset;
    if (aroundClientX !== undefined) {
      anchorTime = timeAt(aroundClientX);
      offset = aroundClientX - scroller.getBoundingClientRect().left - keysWidth;
    } else {
      anchorTime = audio && audio.currentTime > 0 ? audio.currentTime : (scroller.scrollLeft + timeWidth() / 2) / pps;
      offset = anchorTime * pps - scroller.scrollLeft;
    }
    if (factor === 0) { fit = true; } else { fit = false; pps = pps * factor; }
    layout({ time: anchorTime, offset: offset });
    roll.dataset.zoom = (pps / (timeWidth() / span)).toFixed(2);
  }
  document.querySelectorAll("[data-zoom]").forEach(function (button) {
    button.addEventListener("click", function () {
      zoom({ "in": 1.6, out: 1 / 1.6, fit: 0 }[button.dataset.zoom]);
    });
  });
  scroller.addEventListener("wheel", function (event) {
    if (!event.ctrlKey) return;  // pinch gestures and ctrl+wheel zoom; a plain wheel scrolls
    event.preventDefault();
    zoom(event.deltaY < 0 ? 1.25 : 0.8, event.clientX);
  }, { passive: false });
  scroller.addEventListener("scroll", draw);
  window.addEventListener("resize", function () { layout({ time: scroller.scrollLeft / pps, offset: 0 }); });

  // ---- pointer: click seeks; drag scrubs, or on your own piece picks bars to regenerate ----
  var firstInput = document.getElementById("first-bar");
  var lastInput = document.getElementById("last-bar");
  var selecting = bars && bars.count && firstInput && lastInput;
  var band = null;
  if (selecting) {
    band = document.createElement("div");
    band.className = "bar-selection";
    band.setAttribute("aria-hidden", "true");
    content.appendChild(band);
    canvas.classList.add("selectable");
  }
  function clampBar(t) { return Math.max(1, Math.min(bars.count, barOf(t))); }
  function showBars(a, b) {
    var lo = Math.min(a, b), hi = Math.max(a, b);
    firstInput.value = lo; lastInput.value = hi;
    band.style.display = "block";
    band.style.left = (keysWidth + barStart(lo) * pps) + "px";
    band.style.width = ((hi - lo + 1) * bars.bar * pps) + "px";
  }
  function barsFromInputs() {
    var a = parseInt(firstInput.value, 10), b = parseInt(lastInput.value, 10);
    if (a >= 1 && b >= a && b <= bars.count) showBars(a, b); else band.style.display = "none";
  }
  var press = null;
  canvas.addEventListener("pointerdown", function (event) {
    if (event.button !== 0) return;
    var box = canvas.getBoundingClientRect();
    if (event.clientX - box.left < keysWidth) return;
    press = { x: event.clientX, moved: false, bar: selecting ? clampBar(timeAt(event.clientX)) : 0 };
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", function (event) {
    if (!press) return;
    if (Math.abs(event.clientX - press.x) > 4) press.moved = true;
    if (!press.moved) return;
    if (selecting) showBars(press.bar, clampBar(timeAt(event.clientX)));
    else seek(timeAt(event.clientX));
  });
  canvas.addEventListener("pointerup", function (event) {
    if (!press) return;
    if (!press.moved) seek(timeAt(event.clientX));
    else if (selecting) showBars(press.bar, clampBar(timeAt(event.clientX)));
    press = null;
  });
  canvas.addEventListener("pointercancel", function () { press = null; });
  if (selecting) {
    firstInput.addEventListener("input", function () { barsFromInputs(); });
    lastInput.addEventListener("input", function () { barsFromInputs(); });
  }

  // ---- keyboard ----
  roll.addEventListener("keydown", function (event) {
    var now = audio ? audio.currentTime : 0;
    var beat = bars ? bars.beat : 0.5, bar = bars ? bars.bar : 2;
    var handled = true;
    switch (event.key) {
      case "ArrowRight": seek(now + (event.shiftKey ? bar : beat)); break;
      case "ArrowLeft": seek(now - (event.shiftKey ? bar : beat)); break;
      case "Home": seek(0); break;
      case "End": seek(pieceEnd); break;
      case "+": case "=": zoom(1.6); break;
      case "-": case "_": zoom(1 / 1.6); break;
      case "0": zoom(0); break;
      case " ": case "k":
        if (audio) { if (audio.paused) audio.play().catch(function () {}); else audio.pause(); }
        break;
      default: handled = false;
    }
    if (handled) event.preventDefault();
  });

  // ---- legend: one swatch per voice ----
  var legend = document.getElementById("roll-voices");
  if (legend && hasVoices) {
    voices.forEach(function (name, i) {
      var item = document.createElement("span");
      item.className = "voice-key";
      var swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = VOICE_COLORS[i % VOICE_COLORS.length];
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(" " + name));
      legend.appendChild(item);
    });
  }

  window.pianoRoll = { xOf: xOf, timeAt: timeAt, zoom: zoom, barStart: function (n) { return bars ? barStart(n) : null; } };
  layout();
  if (selecting) barsFromInputs();
})();
