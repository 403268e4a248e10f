// Draws the piece's notes ([pitch, start_s, duration_s, velocity]) on a <canvas>.
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

  draw();
  window.addEventListener("resize", draw);
  if (audio) audio.addEventListener("timeupdate", draw);
})();
