// Draws the piece's notes ([pitch, start_s, duration_s, velocity]) on a <canvas>, and the
// chord lane above it ([start_s, label] at each change) on the same time axis.
// Notes before data-primer-end came from the user's MIDI file and get their own colour.
(function () {
  "use strict";
  var canvas = document.getElementById("piano-roll");
  var source = document.getElementById("piano-roll-notes");
  if (!canvas || !source) return;
  var notes = JSON.parse(source.textContent);
  var primerEnd = parseFloat(canvas.dataset.primerEnd || "0");
  var styles = getComputedStyle(document.documentElement);
  var COLORS = {
    background: styles.getPropertyValue("--roll-bg").trim() || "#f6f5fb",
    grid: styles.getPropertyValue("--roll-grid").trim() || "#e4e1f2",
    generated: styles.getPropertyValue("--accent").trim() || "#5b4bdb",
    primer: styles.getPropertyValue("--primer").trim() || "#e0892b",
    playhead: "#d33",
  };
  var audio = document.querySelector(".player audio");
  var pieceEnd = notes.reduce(function (end, n) { return Math.max(end, n[1] + n[2]); }, 0);

  // music21's chord names, shortened to lead-sheet symbols where there is a common one.
  var SYMBOLS = {
    "major triad": "", "minor triad": "m", "diminished triad": "dim", "augmented triad": "aug",
    "dominant seventh chord": "7", "major seventh chord": "maj7", "minor seventh chord": "m7",
    "half-diminished seventh chord": "m7\u266d5", "diminished seventh chord": "dim7",
    "minor-augmented tetrachord": "m(maj7)",
    "major-ninth chord": "maj9", "dominant-ninth": "9", "minor-ninth chord": "m9",
  };

  // Lead-sheet symbol for a music21 name; null for sets with no common symbol (quartal, clusters).
  function chordSymbol(label) {
    var space = label.indexOf(" ");
    var root = label.slice(0, space), name = label.slice(space + 1);
    return Object.prototype.hasOwnProperty.call(SYMBOLS, name) ? root + SYMBOLS[name] : null;
  }

  // A label that does not fit its span is hidden (the span keeps its tooltip), not cut to "E…".
  function fitLabels(lane) {
    Array.prototype.forEach.call(lane.children, function (chord) {
      chord.classList.remove("narrow");
      if (chord.scrollWidth > chord.clientWidth + 1) chord.classList.add("narrow");
    });
  }

  function drawChordLane() {
    var lane = document.getElementById("chord-lane");
    var data = document.getElementById("chord-lane-data");
    if (!lane || !data || pieceEnd <= 0) return;
    var changes = JSON.parse(data.textContent);
    var span = Math.max(pieceEnd, 1);  // the piano roll's own time scale
    changes.forEach(function (change, i) {
      var label = change[1];
      if (!label) return;  // no chord sounds here: leave a gap
      var until = i + 1 < changes.length ? changes[i + 1][0] : pieceEnd;
      var chord = document.createElement("span");
      var symbol = chordSymbol(label);
      chord.className = symbol === null ? "chord other" : "chord";
      chord.setAttribute("role", "listitem");
      chord.style.left = (100 * change[0] / span) + "%";
      chord.style.width = (100 * Math.max(until - change[0], 0) / span) + "%";
      // Other sets show only their root, faded: they are mostly passing sonorities.
      chord.textContent = symbol === null ? label.slice(0, label.indexOf(" ")) : symbol;
      chord.title = label + " at " + change[0].toFixed(1) + " s";
      lane.appendChild(chord);
    });
    fitLabels(lane);
    window.addEventListener("resize", function () { fitLabels(lane); });
  }

  // The form: one block per phrase, its letter and bars, over the same time axis; a repeat has
  // the colour of the phrase it repeats.
  function drawFormLane() {
    var lane = document.getElementById("form-lane");
    var data = document.getElementById("form-lane-data");
    if (!lane || !data || pieceEnd <= 0) return;
    var span = Math.max(pieceEnd, 1);
    JSON.parse(data.textContent).forEach(function (phrase) {
      var block = document.createElement("span");
      var hue = (phrase.letter.charCodeAt(0) - 65) % 6;
      block.className = "phrase letter-" + hue + (phrase.repeat_of !== null ? " repeat" : "");
      block.setAttribute("role", "listitem");
      block.style.left = (100 * phrase.start_s / span) + "%";
      block.style.width = (100 * Math.max(phrase.end_s - phrase.start_s, 0) / span) + "%";
      block.textContent = phrase.letter + (phrase.varied ? "\u2032" : "");
      block.title = "Phrase " + phrase.letter + ", bars " + phrase.first_bar + "\u2013" + phrase.last_bar +
        (phrase.repeat_of !== null ? (phrase.varied ? " (a repeat with its own ending)" : " (a repeat)") : "") +
        (phrase.cadence ? ", closing on a cadence" : "");
      lane.appendChild(block);
    });
  }

  function draw() {
    var ratio = window.devicePixelRatio || 1;
    var width = canvas.clientWidth;
    var height = canvas.clientHeight;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    var ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    ctx.fillStyle = COLORS.background;
    ctx.fillRect(0, 0, width, height);
    if (!notes.length) return;

    var low = 127, high = 0, end = 0;
    notes.forEach(function (n) {
      low = Math.min(low, n[0]);
      high = Math.max(high, n[0]);
      end = Math.max(end, n[1] + n[2]);
    });
    low -= 2; high += 2;  // breathing room above and below
    var rowHeight = height / (high - low + 1);
    var xScale = width / Math.max(end, 1);

    // One line per octave at each C, so the register is easy to read.
    ctx.strokeStyle = COLORS.grid;
    ctx.lineWidth = 1;
    for (var p = low; p <= high; p++) {
      if (p % 12 === 0) {
        var y = height - (p - low + 1) * rowHeight;
        ctx.beginPath(); ctx.moveTo(0, y + 0.5); ctx.lineTo(width, y + 0.5); ctx.stroke();
      }
    }

    notes.forEach(function (n) {
      var isPrimer = primerEnd > 0 && n[1] < primerEnd - 1e-3;
      ctx.globalAlpha = 0.45 + 0.55 * (n[3] / 127);  // louder notes are more opaque
      ctx.fillStyle = isPrimer ? COLORS.primer : COLORS.generated;
      var x = n[1] * xScale;
      var y = height - (n[0] - low + 1) * rowHeight;
      ctx.fillRect(x, y, Math.max(2, n[2] * xScale - 1), Math.max(2, rowHeight - 1));
    });
    ctx.globalAlpha = 1;

    if (audio && audio.currentTime > 0) {
      ctx.strokeStyle = COLORS.playhead;
      var px = audio.currentTime * xScale;
      ctx.beginPath(); ctx.moveTo(px, 0); ctx.lineTo(px, height); ctx.stroke();
    }
  }

  drawFormLane();
  drawChordLane();
  draw();
  window.addEventListener("resize", draw);
  if (audio) audio.addEventListener("timeupdate", draw);
})();
