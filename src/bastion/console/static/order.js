/* The orders' countdowns: every element with data-deadline shows the time left, updated each second. The server
   renders the same text when the page is made, so the page reads right without this script too. */
(function () {
  "use strict";
  var clocks = document.querySelectorAll("[data-deadline]");
  if (!clocks.length) { return; }
  var tick = function () {
    clocks.forEach(function (el) {
      var left = Math.round((Date.parse(el.getAttribute("data-deadline")) - Date.now()) / 1000);
      if (left <= 0) { el.textContent = "overdue"; el.classList.add("overdue"); return; }
      el.textContent = Math.floor(left / 60) + " min " + String(left % 60).padStart(2, "0") + " s left";
      el.classList.toggle("urgent", left <= 15 * 60);
    });
  };
  tick();
  setInterval(tick, 1000);
}());
