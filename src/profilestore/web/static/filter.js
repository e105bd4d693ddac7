// The Users page's filter builder: adds and removes rows in the page, shows the operators and fields a row's
// type uses, and shows the expression the rows build as they change (asked of /users/filter.json, which
// builds it as the server will).  Without this file the same buttons submit the form and the server does it.
(function () {
  "use strict";
  var builder = document.querySelector("[data-builder]");
  if (!builder) { return; }
  var form = builder.closest("form");
  var opsByType = JSON.parse(builder.getAttribute("data-ops"));
  var noValue = builder.getAttribute("data-no-value").split(",");
  var groupsBox = builder.querySelector("[data-groups]");
  var matchRow = builder.querySelector(".match");

  function fromTemplate(kind, values) {
    var html = builder.querySelector('template[data-template="' + kind + '"]').innerHTML;
    Object.keys(values).forEach(function (key) { html = html.split(key).join(String(values[key])); });
    var holder = document.createElement("template");
    holder.innerHTML = html.trim();
    return holder.content.firstElementChild;
  }

  function nextCondition() {
    var n = 0;
    form.querySelectorAll("input[name$=_kind]").forEach(function (input) {
      var m = /^c(\d+)_kind$/.exec(input.name);
      if (m) { n = Math.max(n, Number(m[1]) + 1); }
    });
    return n;
  }

  function groups() { return groupsBox.querySelectorAll("[data-group]"); }

  function nextGroup() {
    var n = 0;
    groups().forEach(function (box) { n = Math.max(n, Number(box.getAttribute("data-group")) + 1); });
    return n;
  }

  // A property row shows the operators of its type, and the value fields its operator reads.
  function adjust(row) {
    var type = row.querySelector("[data-type]");
    if (!type) { return; }
    var op = row.querySelector("[data-op]");
    var allowed = opsByType[type.value] || [];
    Array.prototype.forEach.call(op.options, function (option) {
      var ok = allowed.indexOf(option.value) >= 0;
      option.hidden = !ok;
      option.disabled = !ok;
    });
    if (allowed.indexOf(op.value) < 0) { op.value = allowed[0]; }
    var value = row.querySelector("[data-v]");
    row.querySelector("[data-value]").hidden = noValue.indexOf(op.value) >= 0;
    row.querySelector("[data-value2]").hidden = op.value !== "between";
    var date = type.value === "date" && op.value !== "last";
    var kind = date ? "date" : (type.value === "number" || op.value === "last" ? "number" : "text");
    value.type = kind;  // the browser drops a value the new type cannot hold
    value.step = "any";
    row.querySelector("[data-v2]").type = "date";
    value.placeholder = op.value === "last" ? "days" : (date ? "YYYY-MM-DD" : "value");
  }

  function showMatch() { matchRow.hidden = groups().length < 2; }

  // The expression, as the server builds it from the same fields.
  var asked = 0;
  var timer = null;
  function preview() {
    clearTimeout(timer);
    timer = setTimeout(function () {
      var mine = ++asked;
      var query = new URLSearchParams(new FormData(form)).toString();
      fetch("/users/filter.json?" + query, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (body) { if (mine === asked) { show(body); } })
        .catch(function () {});
    }, 200);
  }

  function show(body) {
    var box = builder.querySelector("[data-preview]");
    box.querySelector("[data-where]").textContent = body.where || "";
    box.querySelector("[data-behaviour]").textContent = body.behaviour || "";
    var noneWhere = box.querySelector("[data-where-none]");
    var noneBehaviour = box.querySelector("[data-behaviour-none]");
    if (noneWhere) { noneWhere.hidden = Boolean(body.where); }
    if (noneBehaviour) { noneBehaviour.hidden = Boolean(body.behaviour); }
    var errors = box.querySelector("[data-errors]");
    errors.textContent = "";
    (body.errors || []).forEach(function (message) {
      var item = document.createElement("li");
      item.textContent = message;
      errors.appendChild(item);
    });
    errors.hidden = !(body.errors && body.errors.length);
  }

  builder.addEventListener("click", function (event) {
    var button = event.target.closest("button");
    if (!button || !builder.contains(button)) { return; }
    var group = button.closest("[data-group]");
    if (button.hasAttribute("data-add")) {
      event.preventDefault();
      var i = nextCondition();
      var row = fromTemplate(button.getAttribute("data-add"), { __i__: i, __n__: i + 1, __g__: group.getAttribute("data-group") });
      group.querySelector("[data-conds]").appendChild(row);
      adjust(row);
      row.querySelector("input:not([type=hidden])").focus();
    } else if (button.hasAttribute("data-add-group")) {
      event.preventDefault();
      var g = nextGroup();
      var box = fromTemplate("group", { __gn__: groups().length + 1, __g__: g });
      groupsBox.appendChild(box);
      box.querySelector("select").focus();
    } else if (button.hasAttribute("data-remove")) {
      event.preventDefault();
      button.closest("[data-cond]").remove();
      group.querySelector("[data-add]").focus();
    } else if (button.hasAttribute("data-remove-group")) {
      event.preventDefault();
      group.remove();
      builder.querySelector("[data-add-group]").focus();
    } else {
      return;
    }
    showMatch();
    preview();
  });

  builder.addEventListener("change", function (event) {
    var row = event.target.closest("[data-cond]");
    if (row && (event.target.hasAttribute("data-type") || event.target.hasAttribute("data-op"))) { adjust(row); }
    preview();
  });
  builder.addEventListener("input", preview);

  builder.querySelectorAll("[data-groups] [data-cond]").forEach(adjust);
  showMatch();
})();
