// Counts a play when an <audio data-play-url> starts (the server counts one per listener per hour),
// and lets a card's play button play its piece inline.
(function () {
  "use strict";
  function csrfToken() {
    var match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }
  document.addEventListener("play", function (event) {
    var audio = event.target;
    if (!audio.dataset || !audio.dataset.playUrl || audio.dataset.counted) return;
    audio.dataset.counted = "1";
    fetch(audio.dataset.playUrl, { method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": csrfToken() } });
  }, true);
  document.querySelectorAll("button[data-play]").forEach(function (button) {
    button.addEventListener("click", function (event) {
      event.preventDefault();
      var audio = document.getElementById(button.dataset.play);
      if (!audio) return;
      document.querySelectorAll("audio").forEach(function (other) { if (other !== audio) other.pause(); });
      if (audio.paused) { audio.play(); button.textContent = "❚❚"; } else { audio.pause(); button.textContent = "▶"; }
      audio.onended = function () { button.textContent = "▶"; };
    });
  });
})();
