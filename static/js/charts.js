/* Plotly charts: every element with data-figure="<id>" is drawn from the figure JSON in the <script
   type="application/json" id="<id>"> block the page renders (json_script). Kept out of the templates so the
   Content-Security-Policy needs no inline script. Drawn on load and again for elements an htmx swap brings
   in (the asset page's range form replaces #chart-panel with a new chart and figure). */
(function () {
  "use strict";

  function draw(target) {
    var source = document.getElementById(target.getAttribute("data-figure"));
    if (!source || !window.Plotly) return;
    var figure = JSON.parse(source.textContent);
    if (!figure) return;  // e.g. an explanation not computed yet
    target.setAttribute("data-drawn", "");
    target.style.height = ((figure.layout && figure.layout.height) || 320) + "px";  // responsive mode fills its box
    // Only the buttons a person uses (zoom, pan, reset, save): a short toolbar covers less of a phone's chart.
    Plotly.react(target, figure.data, figure.layout, {
      responsive: true,
      displaylogo: false,
      modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines",
                               "hoverClosestCartesian", "hoverCompareCartesian"]
    });
  }

  function drawNew() {
    document.querySelectorAll("[data-figure]:not([data-drawn])").forEach(draw);
  }

  drawNew();
  document.body.addEventListener("htmx:afterSettle", drawNew);
})();
