// Add/Edit Profile: rows added and removed in the page, the group key shown only for group profiles.
// Without this script the form still works: "Add Property" asks the server for one more row, a row without
// a name is left out, and the group key is always shown.
(function () {
  "use strict";
  var form = document.querySelector("form.edit-form");
  if (!form) { return; }
  var table = form.querySelector("table.edit-props");
  var body = table.querySelector("tbody");
  var add = form.querySelector("button[data-add]");
  var template = document.getElementById("new-row");
  var next = parseInt(table.getAttribute("data-next"), 10) || 0;

  function wire(row) {
    var remove = row.querySelector("button[data-remove]");
    if (remove) {
      remove.hidden = false;
      remove.addEventListener("click", function () {
        row.remove();
        add.focus();
      });
    }
  }

  // "Add Property" adds a row here; it is no longer a submit button, so Enter in a field saves.
  add.type = "button";
  add.addEventListener("click", function () {
    var holder = document.createElement("tbody");
    holder.innerHTML = template.innerHTML.replace(/__i__/g, String(next));
    next += 1;
    var row = holder.firstElementChild;
    body.appendChild(row);
    wire(row);
    var name = row.querySelector("input[list]");
    if (name) { name.focus(); }
  });
  body.querySelectorAll("tr").forEach(wire);

  // The group key only for group profiles; the id's label follows the profile type.
  var groupOnly = form.querySelector("[data-group-only]");
  var idLabel = form.querySelector("[data-id-label]");
  function showKind() {
    var checked = form.querySelector("input[data-kind]:checked");
    var group = checked && checked.value === "group";
    groupOnly.hidden = !group;
    idLabel.textContent = idLabel.getAttribute(group ? "data-group" : "data-user");
  }
  form.querySelectorAll("input[data-kind]").forEach(function (radio) {
    radio.addEventListener("change", showKind);
  });
  showKind();

  // A hint of the value's form in each value field, after its type.
  var examples = {
    text: "", number: "42", boolean: "true or false", date: "2024-05-01T09:30:00",
    list: "[\"a\", \"b\"]", object: "{\"plan\": \"pro\"}", "null": "(no value)"
  };
  function hint(select) {
    var value = select.closest("tr").querySelector(".prop-value");
    if (value) { value.placeholder = examples[select.value] || ""; }
  }
  table.addEventListener("change", function (event) {
    if (event.target.matches("select[data-type]")) { hint(event.target); }
  });
  table.querySelectorAll("select[data-type]").forEach(hint);
})();
