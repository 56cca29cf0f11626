// Campaign screens: insert a personal field into the template at the cursor, and bar
// charts with 95% intervals drawn as error bars (a small Chart.js plugin: whiskers from
// each bar's "low" to "high"). Loaded only by the campaign pages; no inline script.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-insert]");
  if (!button) return;
  const area = document.getElementById(button.getAttribute("aria-controls"));
  const text = button.dataset.insert;
  const start = area.selectionStart ?? area.value.length;
  const end = area.selectionEnd ?? area.value.length;
  area.setRangeText(text, start, end, "end");
  area.focus();
  area.dispatchEvent(new Event("input", { bubbles: true })); // the live preview
});

const errorBars = {
  id: "errorBars",
  afterDatasetsDraw(chart) {
    const { ctx, scales: { y } } = chart;
    chart.data.datasets.forEach((dataset, i) => {
      if (!dataset.low) return;
      chart.getDatasetMeta(i).data.forEach((bar, j) => {
        const low = dataset.low[j], high = dataset.high[j];
        if (low == null || high == null) return;
        const top = y.getPixelForValue(high), bottom = y.getPixelForValue(low);
        const half = Math.min(bar.width / 4, 12);
        ctx.save();
        ctx.strokeStyle = "#111827";
        ctx.lineWidth = 2;
        ctx.beginPath();
        ctx.moveTo(bar.x, top); ctx.lineTo(bar.x, bottom);
        ctx.moveTo(bar.x - half, top); ctx.lineTo(bar.x + half, top);
        ctx.moveTo(bar.x - half, bottom); ctx.lineTo(bar.x + half, bottom);
        ctx.stroke();
        ctx.restore();
      });
    });
  },
};

function drawBars(root) {
  if (typeof Chart === "undefined") return;
  root.querySelectorAll("canvas[data-bars]").forEach((canvas) => {
    if (canvas.dataset.drawn) return;
    canvas.dataset.drawn = "1";
    const spec = JSON.parse(canvas.dataset.bars);
    const highest = Math.max(0, ...spec.data.filter((v) => v != null),
      ...(spec.high || []).filter((v) => v != null));
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: spec.labels,
        datasets: [{ label: spec.label, data: spec.data, low: spec.low, high: spec.high,
          backgroundColor: ["#1d4ed8", "#b45309", "#047857", "#be123c", "#7c3aed"] }],
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: false }, title: { display: true, text: spec.label } },
        scales: { y: { beginAtZero: true, suggestedMax: highest * 1.1 || 1,
          suggestedMin: Math.min(0, ...(spec.low || []).filter((v) => v != null)) } },
      },
      plugins: [errorBars],
    });
  });
}

document.addEventListener("DOMContentLoaded", () => drawBars(document));
