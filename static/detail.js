// The request log's detail view: an opened detail takes focus and marks its row; Close gives focus back.
(function () {
  "use strict";
  var SELECTED = "selected";

  function opened() {
    return document.querySelector("#request-detail article[data-row]");
  }

  // Mark the row whose detail is open (again after a refresh swapped the rows).
  function markRow() {
    var detail = opened();
    document.querySelectorAll("#log-table tr." + SELECTED).forEach(function (tr) {
      tr.classList.remove(SELECTED);
      tr.removeAttribute("aria-current");
    });
    var row = detail && document.getElementById(detail.dataset.row);
    if (row) {
      row.classList.add(SELECTED);
      row.setAttribute("aria-current", "true");
    }
  }

  document.addEventListener("htmx:afterSettle", function (event) {
    markRow();
    var detail = opened();
    if (detail && event.detail.target.id === "request-detail") {
      detail.scrollIntoView({ block: "nearest" });  // the least scroll that shows it
      detail.focus({ preventScroll: true });
    }
  });

  function close() {
    var detail = opened();
    var row = detail && document.getElementById(detail.dataset.row);
    document.getElementById("request-detail").textContent = "";
    markRow();
    var link = row && row.querySelector(".actions a");
    if (link) link.focus();
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-close-detail]")) close();
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && event.target.closest && event.target.closest("#request-detail")) close();
  });
})();
