// The Cohorts page: ask before deleting; opening Rename puts the cursor in the name. Works without it.
(function () {
  "use strict";
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
  document.querySelectorAll("details.rename").forEach(function (details) {
    details.addEventListener("toggle", function () {
      if (details.open) {
        var input = details.querySelector("input[name=name]");
        input.focus();
        input.select();
      }
    });
  });
})();
