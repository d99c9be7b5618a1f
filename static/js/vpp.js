// VPP bulk actions (vpp/bulk_views.py). No inline script anywhere (CSP).
//  - A 403 (no permission), 409 (token missing, selection changed) or 422 (selection refused) answer to a request aimed at the shared
//    modal carries a readable message: show it instead of htmx's default "do nothing".
//  - When a job panel reports its job finished (HX-Trigger: vppJobFinished), the Users table
//    behind the modal is fetched again so the VPP status column is current, and so is the job
//    page ([data-job-page]: its rows, counts and "Retry failed only").
(function () {
  "use strict";
  document.body.addEventListener("vppJobFinished", function () {
    var filter = document.getElementById("filter-form");
    if (filter && window.htmx) { window.htmx.trigger(filter, "submit"); }
    // On the job page the per-user rows, the counts and "Retry failed" are fetched again too.
    var jobPage = document.querySelector("[data-job-page]");
    if (jobPage && window.htmx) {
      window.htmx.ajax("GET", window.location.href, { target: jobPage, swap: "outerHTML", select: "[data-job-page]" });
    }
  });
  document.addEventListener("htmx:beforeSwap", function (event) {
    var detail = event.detail;
    var status = detail.xhr ? detail.xhr.status : 0;
    if ((status === 403 || status === 409 || status === 422) && detail.target && detail.target.id === "modal") {
      detail.shouldSwap = true;
      detail.isError = false;
    }
  });
})();
