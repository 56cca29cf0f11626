// The console's only script: the CSRF token on every htmx request, and the charts,
// drawn from data attributes (no inline script: the Content-Security-Policy forbids it).
document.addEventListener("htmx:configRequest", (event) => {
  const token = document.querySelector('meta[name="csrf-token"]');
  if (token) event.detail.headers["X-CSRFToken"] = token.content;
});

const PALETTE = ["#1d4ed8", "#b45309", "#047857", "#7c3aed", "#be123c", "#0e7490"];

function drawCharts(root) {
  if (typeof Chart === "undefined") return;
  root.querySelectorAll("canvas[data-chart]").forEach((canvas) => {
    if (canvas.dataset.drawn) return;
    canvas.dataset.drawn = "1";
    const spec = JSON.parse(canvas.dataset.chart);
    new Chart(canvas, {
      type: spec.type,
      data: {
        labels: spec.labels,
        datasets: spec.series.map((s, i) => ({
          label: s.label, data: s.data, borderColor: PALETTE[i % PALETTE.length],
          backgroundColor: spec.type === "line" ? PALETTE[i % PALETTE.length] + "33"
            : spec.labels.map((_, j) => PALETTE[(spec.series.length > 1 ? i : j) % PALETTE.length]),
          fill: false, tension: 0.2, pointRadius: 0,
        })),
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: spec.series.length > 1 || spec.type === "doughnut" } },
        scales: spec.type === "doughnut" ? {} : { x: { ticks: { maxTicksLimit: 10 } } },
      },
    });
  });
}

document.addEventListener("DOMContentLoaded", () => drawCharts(document));
document.addEventListener("htmx:afterSwap", (event) => drawCharts(event.target));

// Typed confirmations: the button stays disabled until the text matches.
document.addEventListener("input", (event) => {
  const input = event.target.closest("[data-confirm-text]");
  if (!input) return;
  const button = input.form.querySelector("button[type=submit]");
  button.disabled = input.value.trim() !== input.dataset.confirmText;
});
