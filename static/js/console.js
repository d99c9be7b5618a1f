// kmconsole console behaviour. No inline scripts anywhere (CSP script-src 'self'):
// pages opt in to behaviour with data-* attributes handled here.
//
//   Shared modal   <dialog id="modal"> in base.html. Any htmx request with hx-target="#modal"
//                  fills it and it opens. Elements with [data-modal-close] (or a form with
//                  method="dialog") close it; Esc closes it; a response header
//                  `HX-Trigger: closeModal` closes it from the server.
//   Messages       .message toasts; [data-dismiss] closes one; success/info fade after 6 s.
//   Row selection  form[data-bulk-form]: input.row-check rows, input[data-check-all] header box,
//                  [data-selection-count] shows the count, [data-select-all-matching] button
//                  sets the hidden input[name=select_all] to 1; [data-needs-selection] buttons are
//                  disabled while nothing is selected.
//                  Ticks survive a reload of the table (a job ending, a filter change): the
//                  rows still shown stay ticked, "all matching" stays on while the filter is
//                  the same.
//   Safeguard      [data-requires-check] submit buttons stay disabled until every
//                  [data-enables-submit] checkbox of their form is ticked.
//   Dependent      [data-enabled-when="name=value"] fields are enabled only while the form's
//                  field "name" has that value (the schedule's "Every N hours" / "Daily at").
//   Auto-submit    form[data-autosubmit]: select/checkbox changes submit it (htmx handles it
//                  if the form has hx-get); <noscript>-free: a visible submit button stays.
//   URL filters    form[data-url-filters]: its fields are set from the address bar when the page
//                  is shown again (Back/Forward, htmx history restore), so they match the table.
(function () {
  "use strict";

  // ------------------------------------------------------------------ modal
  function modal() { return document.getElementById("modal"); }

  function openModal() {
    var dialog = modal();
    if (dialog && !dialog.open && typeof dialog.showModal === "function") {
      dialog.showModal();
      var focusable = dialog.querySelector("[autofocus], input:not([type=hidden]), select, textarea, button:not(.modal-close)");
      if (focusable) { focusable.focus(); }
    }
  }

  function closeModal() {
    var dialog = modal();
    if (dialog && dialog.open) { dialog.close(); }
  }

  document.addEventListener("htmx:afterSwap", function (event) {
    var dialog = modal();
    if (!dialog) { return; }
    if (event.detail.target === dialog) {
      if (dialog.innerHTML.trim()) { openModal(); } else { closeModal(); }
    }
  });

  document.addEventListener("close", function (event) {
    // Empty the dialog once closed so a stale form can never be re-submitted.
    if (event.target === modal()) { event.target.innerHTML = ""; }
  }, true);

  document.addEventListener("click", function (event) {
    var closer = event.target.closest("[data-modal-close]");
    if (closer) { event.preventDefault(); closeModal(); return; }
    // A click on the backdrop (the dialog element itself, outside its content) closes it.
    var dialog = modal();
    if (dialog && event.target === dialog) {
      var rect = dialog.getBoundingClientRect();
      var inside = event.clientX >= rect.left && event.clientX <= rect.right &&
        event.clientY >= rect.top && event.clientY <= rect.bottom;
      if (!inside) { closeModal(); }
    }
  });

  // HX-Trigger events are dispatched on the requesting element and bubble up to document.
  document.addEventListener("closeModal", closeModal);

  // ------------------------------------------------------------------ messages
  function armMessages(root) {
    (root || document).querySelectorAll(".message:not([data-armed])").forEach(function (message) {
      message.setAttribute("data-armed", "1");
      var sticky = message.classList.contains("message-error") || message.classList.contains("message-warning");
      if (!sticky) { setTimeout(function () { dismiss(message); }, 6000); }
    });
  }

  function dismiss(message) {
    message.classList.add("leaving");
    setTimeout(function () { message.remove(); }, 220);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-dismiss]");
    if (button) { dismiss(button.closest(".message")); }
  });

  // ------------------------------------------------------------------ row selection
  function bulkForms(root) {
    var found = [];
    if (root.matches && root.matches("form[data-bulk-form]")) { found.push(root); }
    root.querySelectorAll && root.querySelectorAll("form[data-bulk-form]").forEach(function (f) { found.push(f); });
    if (!found.length && root.closest) {
      var parent = root.closest("form[data-bulk-form]");
      if (parent) { found.push(parent); }
    }
    return found;
  }

  function refreshSelection(form) {
    var rows = form.querySelectorAll("input.row-check");
    var checked = form.querySelectorAll("input.row-check:checked");
    var selectAll = form.querySelector("input[name=select_all]");
    var matching = selectAll && selectAll.value === "1";
    var total = parseInt(form.getAttribute("data-total") || "0", 10);
    var count = matching ? total : checked.length;

    var head = form.querySelector("input[data-check-all]");
    if (head) {
      head.checked = rows.length > 0 && checked.length === rows.length;
      head.indeterminate = checked.length > 0 && checked.length < rows.length;
    }
    form.querySelectorAll("[data-selection-count]").forEach(function (el) {
      el.textContent = count.toLocaleString();
    });
    form.querySelectorAll("[data-needs-selection]").forEach(function (el) {
      el.disabled = count === 0;
    });
    // Offer "select all N matching" only when the whole page is ticked and more exist.
    form.querySelectorAll("[data-select-all-banner]").forEach(function (el) {
      var pageFull = rows.length > 0 && checked.length === rows.length;
      el.hidden = !(pageFull && total > rows.length);
      var offer = el.querySelector("[data-offer]");
      var done = el.querySelector("[data-done]");
      if (offer) { offer.hidden = matching; }
      if (done) { done.hidden = !matching; }
    });
    form.classList.toggle("has-selection", count > 0);
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    var form = target.closest && target.closest("form[data-bulk-form]");
    if (form) {
      var selectAll = form.querySelector("input[name=select_all]");
      if (target.matches("input[data-check-all]")) {
        form.querySelectorAll("input.row-check").forEach(function (box) { box.checked = target.checked; });
      }
      // Any manual change of the ticks leaves "all matching" mode.
      if (selectAll && (target.matches("input.row-check") || target.matches("input[data-check-all]"))) {
        selectAll.value = "";
      }
      refreshSelection(form);
    }
    var auto = target.closest && target.closest("form[data-autosubmit]");
    if (auto && target.matches("select, input[type=checkbox], input[type=radio]")) {
      if (typeof auto.requestSubmit === "function") { auto.requestSubmit(); } else { auto.submit(); }
    }
  });

  // Ticks across a reload of the table: remembered before htmx swaps it, put back after.
  var keptTicks = {};

  function filterSignature(form) {
    var parts = [];
    form.querySelectorAll("input[type=hidden]").forEach(function (input) {
      if (["select_all", "csrfmiddlewaretoken", "sort"].indexOf(input.name) === -1) { parts.push(input.name + "=" + input.value); }
    });
    return parts.join("&");
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (!target || !target.querySelectorAll) { return; }
    bulkForms(target).forEach(function (form) {
      if (!form.id) { return; }
      var ids = [];
      form.querySelectorAll("input.row-check:checked").forEach(function (box) { ids.push(box.value); });
      var selectAll = form.querySelector("input[name=select_all]");
      keptTicks[form.id] = { ids: ids, all: selectAll && selectAll.value === "1", filter: filterSignature(form) };
    });
  });

  function restoreTicks(form) {
    var kept = form.id && keptTicks[form.id];
    if (!kept) { return; }
    delete keptTicks[form.id];
    form.querySelectorAll("input.row-check").forEach(function (box) {
      if (kept.ids.indexOf(box.value) !== -1) { box.checked = true; }
    });
    var selectAll = form.querySelector("input[name=select_all]");
    if (selectAll && kept.all && kept.filter === filterSignature(form)) { selectAll.value = "1"; }
  }

  // ------------------------------------------------------------------ safeguard
  function refreshSafeguards(root) {
    var forms = [];
    if (root.matches && root.matches("form")) { forms.push(root); }
    if (root.querySelectorAll) { root.querySelectorAll("form").forEach(function (f) { forms.push(f); }); }
    if (root.closest && root.closest("form")) { forms.push(root.closest("form")); }
    forms.forEach(function (form) {
      var guards = form.querySelectorAll("[data-requires-check]");
      if (!guards.length) { return; }
      var boxes = form.querySelectorAll("input[data-enables-submit]");
      var ready = Array.prototype.every.call(boxes, function (box) { return box.checked; });
      guards.forEach(function (button) { button.disabled = !ready; });
    });
  }

  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("input[data-enables-submit]")) { refreshSafeguards(event.target); }
  });

  // ------------------------------------------------------------------ fields of a chosen option
  // [data-enabled-when="mode=daily"]: enabled only while the form's field "mode" is "daily".
  function refreshDependentFields(root) {
    var scope = root.querySelectorAll ? root : document;
    var fields = Array.prototype.slice.call(scope.querySelectorAll("[data-enabled-when]"));
    if (root.matches && root.matches("[data-enabled-when]")) { fields.push(root); }
    fields.forEach(function (field) {
      var form = field.form;
      // A field the server rendered disabled (no permission to change) stays so.
      if (!field.hasAttribute("data-managed")) {
        field.setAttribute("data-managed", field.disabled ? "locked" : "1");
      }
      if (!form || field.getAttribute("data-managed") === "locked") { return; }
      var rule = field.getAttribute("data-enabled-when").split("=");
      var chosen = form.querySelector("[name='" + rule[0] + "']:checked") || form.querySelector("select[name='" + rule[0] + "']");
      field.disabled = !chosen || chosen.value !== rule[1];
    });
  }

  document.addEventListener("change", function (event) {
    var form = event.target.form;
    if (form && form.querySelector("[data-enabled-when]")) { refreshDependentFields(form); }
  });

  // ------------------------------------------------------------------ filters follow the URL
  function syncFiltersFromUrl() {
    var params = new URLSearchParams(window.location.search);
    document.querySelectorAll("form[data-url-filters]").forEach(function (form) {
      form.querySelectorAll("input[name]:not([type=hidden]), select[name]").forEach(function (field) {
        field.value = params.get(field.name) || "";
        if (field.tagName === "SELECT" && field.selectedIndex === -1) { field.selectedIndex = 0; }
      });
    });
  }

  window.addEventListener("pageshow", syncFiltersFromUrl);
  document.addEventListener("htmx:historyRestore", syncFiltersFromUrl);

  document.addEventListener("click", function (event) {
    var all = event.target.closest("[data-select-all-matching]");
    var clear = event.target.closest("[data-clear-selection]");
    var form = (all || clear) && (all || clear).closest("form[data-bulk-form]");
    if (!form) { return; }
    event.preventDefault();
    var selectAll = form.querySelector("input[name=select_all]");
    if (all && selectAll) { selectAll.value = "1"; }
    if (clear) {
      if (selectAll) { selectAll.value = ""; }
      form.querySelectorAll("input.row-check, input[data-check-all]").forEach(function (box) { box.checked = false; });
    }
    refreshSelection(form);
  });

  // ------------------------------------------------------------------ menus
  // <details data-menu> drop-downs close on an outside click or Esc.
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details[data-menu][open]").forEach(function (menu) {
      if (!menu.contains(event.target)) { menu.removeAttribute("open"); }
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") { return; }
    document.querySelectorAll("details[data-menu][open]").forEach(function (menu) { menu.removeAttribute("open"); });
  });

  // ------------------------------------------------------------------ wiring
  function init(root) {
    armMessages(root);
    bulkForms(root).forEach(function (form) { restoreTicks(form); refreshSelection(form); });
    refreshSafeguards(root);
    refreshDependentFields(root);
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (event) { init(event.detail.elt); });
  document.addEventListener("htmx:oobAfterSwap", function (event) { armMessages(event.detail.target); });
})();
