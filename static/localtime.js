// Times arrive in UTC (<time data-local>); each is shown in the reader's own zone, with the zone's name.
(function () {
  "use strict";
  function pad(n) { return String(n).padStart(2, "0"); }

  function zoneName(date) {
    var part = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" }).formatToParts(date)
      .find(function (p) { return p.type === "timeZoneName"; });
    return part ? part.value : "";
  }

  // data-local: "minutes" (2026-12-06 21:45 CET), "seconds" (… 21:45:07 CET), "short" (12-06 21:45:07 CET).
  function localize(root) {
    root.querySelectorAll("time[data-local]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) return;
      var style = el.dataset.local;
      var day = (style === "short" ? "" : d.getFullYear() + "-") + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
      var time = pad(d.getHours()) + ":" + pad(d.getMinutes()) + (style === "minutes" ? "" : ":" + pad(d.getSeconds()));
      if (!el.title) el.title = el.textContent;  // the UTC time stays one hover away
      el.textContent = day + " " + time + " " + zoneName(d);
    });
  }

  document.addEventListener("DOMContentLoaded", function () { localize(document); });
  document.addEventListener("htmx:load", function (event) { localize(event.detail.elt); });  // swapped-in rows
})();
