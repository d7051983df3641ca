// Copy buttons: <button data-copy="element-id"> copies that element's text (or a field's value).
(function () {
  "use strict";
  function textOf(el) {
    return "value" in el && el.tagName !== "BUTTON" ? el.value : el.textContent;
  }

  function confirm(button, label) {
    var before = button.textContent;
    button.textContent = label;
    setTimeout(function () { button.textContent = before; }, 2000);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.dataset.copy);
    if (!source) return;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(textOf(source)).then(
        function () { confirm(button, "Copied"); },
        function () { confirm(button, "Press Ctrl+C"); });
    } else {  // plain http on another host: select the text so the user can copy it
      var range = document.createRange();
      range.selectNodeContents(source);
      if (source.select) source.select(); else { getSelection().removeAllRanges(); getSelection().addRange(range); }
      confirm(button, "Press Ctrl+C");
    }
  });
})();
