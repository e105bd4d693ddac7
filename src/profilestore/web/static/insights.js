// Insights: a box to find an event in a long list of names, and URLs without empty fields. The page works
// without it.
(function () {
  "use strict";
  var form = document.querySelector("form.insights-form");
  if (form) {
    form.addEventListener("submit", function () {
      var breakdown = form.elements.namedItem("breakdown");
      form.querySelectorAll("input[name], select[name]").forEach(function (field) {
        var idle = field.value === "" || (field.name === "breakdown_type" && breakdown && breakdown.value.trim() === "");
        if (idle && field.type !== "checkbox" && field.type !== "radio") { field.disabled = true; }
      });
      // Back to this page from the next one: the fields are enabled again.
      window.addEventListener("pageshow", function () {
        form.querySelectorAll("[disabled]").forEach(function (field) { field.disabled = false; });
      }, { once: true });
    });
  }
  var list = document.querySelector("[data-checklist]");
  if (!list || list.querySelectorAll("label.check").length < 8) { return; }
  var id = "event-search";
  var label = document.createElement("label");
  label.setAttribute("for", id);
  label.className = "visually-hidden";
  label.textContent = "Find an event";
  var input = document.createElement("input");
  input.id = id;
  input.type = "search";
  input.placeholder = "Find an event";
  input.autocomplete = "off";
  input.className = "event-search";
  list.parentNode.insertBefore(label, list);
  list.parentNode.insertBefore(input, list);
  input.addEventListener("input", function () {
    var needle = input.value.trim().toLowerCase();
    list.querySelectorAll("label.check").forEach(function (item) {
      var name = item.textContent.trim().toLowerCase();
      item.hidden = needle !== "" && name.indexOf(needle) === -1 && !item.querySelector("input").checked;
    });
  });
  // Enter in the search box finds, it does not submit the form.
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter") { event.preventDefault(); }
  });
})();
