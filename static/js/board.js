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
  // The live socket must not remove or move a card whose feedback request is still in flight: htmx
  // resolves that request's answer (the confirmation, the card's own move) from the form, and a form taken
  // out of the page finds nothing ("Invalid re-target"). The answer carries the same change itself.
  var inSocketMessage = false;
  document.addEventListener("htmx:wsBeforeMessage", function () { inSocketMessage = true; });
  document.addEventListener("htmx:wsAfterMessage", function () { inSocketMessage = false; });
  function busy(id) {
    var card = id && document.getElementById(id);
    return !!(card && card.querySelector(".htmx-request"));
  }
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    if (!inSocketMessage) return;
    var ids = [];
    var target = event.detail.target;
    if (target && target.id) ids.push(target.id);
    var fragment = event.detail.fragment;
    if (fragment && fragment.querySelectorAll) {
      fragment.querySelectorAll("article.alert-card[id]").forEach(function (card) { ids.push(card.id); });
    }
    if (ids.some(busy)) event.detail.shouldSwap = false;
  });

  // Nor may a re-sync replace the list under a card's feedback request in flight: htmx would resolve the
  // answer's target from the detached form, find none, and drop the confirmation (the card just vanished).
  // That re-sync's swap is skipped and it is sent again once no feedback request is in flight.
  var resyncAgain = false;
  function feedbackInFlight() {
    return !!document.querySelector("#alert-board form.feedback.htmx-request");
  }
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "alert-list" && feedbackInFlight()) {
      event.detail.shouldSwap = false;
      resyncAgain = true;
    }
  });
  document.addEventListener("htmx:afterRequest", function () {
    if (!resyncAgain) return;
    setTimeout(function () {  // after htmx has cleared the finished request's state
      if (resyncAgain && !feedbackInFlight()) {
        resyncAgain = false;
        resync();
      }
    }, 50);
  });

  // A note being typed survives the live socket and a re-sync. Both replace the card's HTML, which an
  // ongoing alert gets every scoring window (seconds apart): the box was emptied under the technician's
  // thumbs, the phone's keyboard closed, and the verdict tapped next was saved without the note.
  var keptNotes = null;
  // A "Not saved" message is the same: a live update redrawing the card must not take it away before
  // the technician has read it (it stays until the card's next verdict replaces it).
  var keptErrors = null;
  function keepErrors() {
    keptErrors = [];
    document.querySelectorAll("#alert-board .alert-card .feedback-error[data-client]").forEach(function (note) {
      var card = note.closest(".alert-card");
      var form = note.closest("form");
      if (!card || !card.id || !form) return;
      keptErrors.push({card: card.id, form: Array.prototype.indexOf.call(card.querySelectorAll("form"), form),
                       text: note.textContent});
    });
  }
  function restoreErrors() {
    (keptErrors || []).forEach(function (kept) {
      var card = document.getElementById(kept.card);
      var form = card ? card.querySelectorAll("form")[kept.form] : null;
      if (!form || form.querySelector(".feedback-error")) return;  // gone, or the server's own message
      var note = document.createElement("p");
      note.className = "feedback-error";
      note.setAttribute("role", "alert");
      note.setAttribute("data-client", "");
      note.textContent = kept.text;
      form.insertBefore(note, form.firstChild);
    });
    keptErrors = null;
  }
  function keepNotes() {
    keepErrors();
    keptNotes = [];
    document.querySelectorAll("#alert-board .fb-note[id]").forEach(function (box) {
      var focused = box === document.activeElement;
      if (box.value || focused) {
        keptNotes.push({id: box.id, value: box.value, focused: focused,
                        start: box.selectionStart, end: box.selectionEnd});
      }
    });
  }
  function restoreNotes() {
    restoreErrors();
    (keptNotes || []).forEach(function (kept) {
      var box = document.getElementById(kept.id);
      if (!box) return;  // the card left the board
      if (!box.value) box.value = kept.value;
      if (kept.focused && document.activeElement !== box) {
        box.focus({preventScroll: true});
        box.setSelectionRange(kept.start, kept.end);
      }
    });
    keptNotes = null;
  }
  // Each card in its lane (data-lane) and in the server's order (data-order, alerts.models.Alert.board_order,
  // compared as text): the socket adds a card at the top of a lane and replaces an updated one in place, where
  // a reload would show it elsewhere (a low alert below the critical ones, an undone repair back in the list).
  function placeCards() {
    var lanes = {"": document.getElementById("alert-list"), "in-work": document.getElementById("in-work-list")};
    if (!lanes[""] || !lanes["in-work"]) return;
    var cards = Array.prototype.slice.call(
      document.querySelectorAll("#alert-list > article.alert-card, #in-work-list > article.alert-card"));
    cards.sort(function (a, b) {
      var x = a.getAttribute("data-order") || "", y = b.getAttribute("data-order") || "";
      return x < y ? -1 : x > y ? 1 : 0;
    });
    var last = {};
    cards.forEach(function (card) {  // moves only the cards out of place (a move loses the focus)
      var lane = card.getAttribute("data-lane") === "in-work" ? "in-work" : "";
      var list = lanes[lane];
      var place = last[lane] ? last[lane].nextElementSibling : list.firstElementChild;
      if (place !== card) list.insertBefore(card, place);
      last[lane] = card;
    });
  }
  document.addEventListener("htmx:wsBeforeMessage", keepNotes);
  document.addEventListener("htmx:wsAfterMessage", placeCards);  // before restoreNotes gives the focus back
  document.addEventListener("htmx:wsAfterMessage", restoreNotes);
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "alert-list" && event.detail.shouldSwap) keepNotes();
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "alert-list") restoreNotes();
  });

  // A verdict's confirmation offers "Undo" for data-undo-s seconds, then goes away.
  function armUndo(root) {
    var armed = [];
    (root.querySelectorAll ? root.querySelectorAll(".verdict-done[data-undo-s]") : []).forEach(function (note) {
      if (note.dataset.armed) return;
      note.dataset.armed = "1";
      armed.push(note);
      var seconds = parseFloat(note.getAttribute("data-undo-s")) || 10;
      setTimeout(function () {
        var form = note.querySelector(".undo-form");
        if (form) form.remove();
      }, seconds * 1000);
      setTimeout(function () { note.remove(); }, (seconds + 5) * 1000);
    });
    return armed;
  }
  // The confirmation just given stays on screen with its Undo: the messages box is sticky, but a card that
  // leaves the list shortens the page under it and can push it above the top of a phone's screen.
  function showConfirmation(notes) {
    notes.forEach(function (note) {
      var box = note.getBoundingClientRect();
      if (box.top < 0 || box.bottom > window.innerHeight) note.scrollIntoView({block: "nearest"});
    });
  }
  // (A verdict's answer moves its card to the in-work lane's top out of band: placeCards too.)
  document.addEventListener("htmx:afterSettle", function () {
    var armed = armUndo(document);
    placeCards();
    showConfirmation(armed);
  });
  document.addEventListener("DOMContentLoaded", function () { armUndo(document); });
  // An undone verdict brings the card back: the live socket sends it; without one, re-sync the board.
  document.addEventListener("verdict-undone", function () {
    if (document.body.getAttribute("data-ws-state") !== "open") resync();
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr && event.detail.xhr.status;
    if (status === 400 || status === 403) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // A button whose request got no answer (no network, the server restarting) or a server error (5xx):
  // htmx swaps nothing then, so the technician would believe it was saved. Say it in the button's form.
  function notSaved(event, text) {
    var elt = event.detail.elt;
    var form = elt && elt.closest ? elt.closest("form") : null;
    if (!form || !form.isConnected) return;
    var note = form.querySelector(".feedback-error[data-client]");
    if (!note) {
      note = document.createElement("p");
      note.className = "feedback-error";
      note.setAttribute("role", "alert");
      note.setAttribute("data-client", "");
      form.insertBefore(note, form.firstChild);
    }
    note.textContent = text;
  }
  document.addEventListener("htmx:sendError", function (event) {
    notSaved(event, "Not saved: Vigil could not be reached. Check the connection and tap again.");
  });
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (status >= 500) notSaved(event, "Not saved: the server could not do it (error " + status + "). Tap again in a moment.");
  });

  // The answer to a verdict and the live socket both remove a closed alert's card; whichever comes second
  // would find no card and htmx logs an "oobErrorNoTarget" error. Such deletes are dropped beforehand
  // (the board's hx-ext="board-cards" applies this to the socket's messages and the buttons' answers).
  var CARD_DELETE = /<article id="(alert-\d+)" hx-swap-oob="delete"><\/article>/g;
  if (window.htmx) {
    htmx.defineExtension("board-cards", {
      transformResponse: function (text) {
        return text.replace(CARD_DELETE, function (whole, id) {
          return document.getElementById(id) ? whole : "";
        });
      }
    });
  }
})();
