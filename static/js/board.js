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
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr && event.detail.xhr.status;
    if (status === 400 || status === 403) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();
