// The length is given in seconds or in notes, never both: typing one clears the other.
(function () {
  "use strict";
  var seconds = document.getElementById("id_seconds");
  var notes = document.getElementById("id_notes");
  if (!seconds || !notes) return;
  function clearOther(other) {
    return function (event) {
      if (event.target.value !== "") other.value = "";
    };
  }
  seconds.addEventListener("input", clearOther(notes));
  notes.addEventListener("input", clearOther(seconds));
})();
