// The overview's chart: requests enqueued and finished per minute over the last hour, drawn with uPlot
// (vendor/uplot, MIT: a maintained chart library, served from the binary) from the series the
// page carries in data-series. The table below it shows the same minutes without JavaScript.
(function () {
  "use strict";
  var el = document.getElementById("throughput-chart");
  if (!el || typeof uPlot === "undefined") { return; }
  var data = JSON.parse(el.dataset.series);
  var opts = {
    width: Math.max(280, Math.min(el.clientWidth, 960)),
    height: 220,
    scales: { x: { time: true } },
    axes: [{}, { label: "per minute" }],
    series: [
      {},
      { label: "enqueued", stroke: "#1f5fae", width: 2, points: { show: false } },
      { label: "completed", stroke: "#1a7f37", width: 2, points: { show: false } },
      { label: "failed", stroke: "#a4262c", width: 2, points: { show: false } },
      { label: "cancelled", stroke: "#6e7781", width: 2, points: { show: false } }
    ]
  };
  new uPlot(opts, data, el);
})();
