// The survey results' trend: console.js draws the chart from its data attribute; this
// shows each week's point and joins the weeks across those without an answer (null),
// and keeps the axis on the score's whole scale (-100 to 100 for NPS, 0 to 100 for CSAT).
document.addEventListener("DOMContentLoaded", () => {
  if (typeof Chart === "undefined") return;
  document.querySelectorAll("canvas[data-trend]").forEach((canvas) => {
    const chart = Chart.getChart(canvas);
    if (!chart) return;
    chart.data.datasets.forEach((set) => {
      set.pointRadius = 4;
      set.pointHoverRadius = 6;
      set.spanGaps = true;
    });
    chart.options.scales.y = { min: Number(canvas.dataset.trendMin), max: 100 };
    chart.update();
  });
});
