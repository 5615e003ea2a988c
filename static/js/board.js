/* The live board: mark the socket state on <body data-ws-state>, re-sync the whole list on every
   (re)connect, and let htmx show the feedback form's 400/403 answers (it ignores error bodies otherwise). */
(function () {
  "use strict";

  function resync() {
    var board = document.getElementById("alert-board");
    var url = board && board.getAttribute("data-resync-url");
    if (!url || !window.htmx) return;
    htmx.ajax("GET", url, {target: "#alert-list", swap: "outerHTML"});
  }

  document.addEventListener("htmx:wsOpen", function () {
    document.body.setAttribute("data-ws-state", "open");
    resync();
  });
  document.addEventListener("htmx:wsClose", function () {
    document.body.setAttribute("data-ws-state", "closed");
  });
  // A feedback answer retargets its alert's card; the live socket may have removed that card first
  // (the alert closed). Then there is nothing left to update, and htmx would throw "Invalid re-target".
  document.addEventListener("htmx:beforeOnLoad", function (event) {
    var xhr = event.detail.xhr;
    var target = xhr && xhr.getResponseHeader("HX-Retarget");
    if (target && target.charAt(0) === "#" && !document.getElementById(target.slice(1))) {
      event.preventDefault();
    }
  });
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr && event.detail.xhr.status;
    if (status === 400 || status === 403) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();
