/* Plotly charts: every element with data-figure="<id>" is drawn from the figure JSON in the <script
   type="application/json" id="<id>"> block the page renders (json_script). Kept out of the templates so the
   Content-Security-Policy needs no inline script. Drawn on load and again for elements an htmx swap brings
   in (the asset page's range form replaces #chart-panel with a new chart and figure).

   On a phone or a touch screen Plotly's toolbar is hidden (its 20 px icons are too small to tap) and a drag
   on a chart scrolls the page instead of zooming: a tall sensor chart filled the screen and caught every
   swipe. A chart with data-zoom gets large Zoom in / Zoom out / Reset buttons for its time axis instead;
   tapping a chart still shows the values under the finger. A figure that keeps room above its title for the
   toolbar says how much (layout.meta.toolbar_px, e.g. the alert's explanation): without the toolbar that
   room is given back, or it would be an empty band at the top of the chart. */
(function () {
  "use strict";

  var TOUCH = window.matchMedia("(max-width: 700px), (pointer: coarse)");

  function axisNames(layout) {
    return Object.keys(layout).filter(function (key) { return /^[xy]axis\d*$/.test(key); });
  }

  function withoutToolbarRoom(layout) {
    var room = (layout.meta && layout.meta.toolbar_px) || 0;
    if (!room) return;
    if (layout.margin && layout.margin.t) layout.margin.t = Math.max(0, layout.margin.t - room);
    var pad = layout.title && layout.title.pad;
    if (pad && pad.t) pad.t = Math.max(0, pad.t - room);
    if (layout.height) layout.height -= room;
  }

  function draw(target) {
    var source = document.getElementById(target.getAttribute("data-figure"));
    if (!source || !window.Plotly) return;
    var figure = JSON.parse(source.textContent);
    if (!figure) return;  // e.g. an explanation not computed yet
    var touch = TOUCH.matches;
    var layout = figure.layout || {};
    if (touch) {
      layout.dragmode = false;
      axisNames(layout).forEach(function (name) { layout[name].fixedrange = true; });
      withoutToolbarRoom(layout);
    }
    target.setAttribute("data-drawn", "");
    target.style.height = (layout.height || 320) + "px";  // responsive mode fills its box
    // Only the buttons a person uses (zoom, pan, reset, save): a short toolbar covers less of the chart.
    Plotly.react(target, figure.data, layout, {
      responsive: true,
      displaylogo: false,
      displayModeBar: touch ? false : "hover",
      modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines",
                               "hoverClosestCartesian", "hoverCompareCartesian"]
    });
    if (touch && target.hasAttribute("data-zoom") && layout.xaxis && layout.xaxis.range) {
      addZoomButtons(target, layout.xaxis.range.slice());
    }
  }

  function button(text, onClick) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = "button button-quiet";
    b.textContent = text;
    b.addEventListener("click", onClick);
    return b;
  }

  /* Zoom the shared time axis about its middle (Plotly takes milliseconds on a date axis). */
  function addZoomButtons(target, initial) {
    var bar = document.createElement("div");
    bar.className = "chart-controls";
    bar.setAttribute("role", "group");
    bar.setAttribute("aria-label", "Chart time axis");
    function zoom(factor) {
      var axis = target._fullLayout.xaxis;
      var lo = axis.r2l(axis.range[0]), hi = axis.r2l(axis.range[1]);
      var mid = (lo + hi) / 2, half = (hi - lo) * factor / 2;
      Plotly.relayout(target, {"xaxis.range": [mid - half, mid + half]});
    }
    bar.appendChild(button("Zoom in", function () { zoom(0.5); }));
    bar.appendChild(button("Zoom out", function () { zoom(2); }));
    bar.appendChild(button("Reset", function () {
      Plotly.relayout(target, {"xaxis.range": initial.slice()});
    }));
    target.parentNode.insertBefore(bar, target);
  }

  function drawNew() {
    document.querySelectorAll("[data-figure]:not([data-drawn])").forEach(draw);
  }

  drawNew();
  document.body.addEventListener("htmx:afterSettle", drawNew);
})();
