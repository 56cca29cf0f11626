// The segment builder's one script: the live count's errors (#count-errors, from
// console.segment_count) are written into the error slot of the node each names, and
// the slots of the other nodes are cleared. The boxes themselves are never redrawn, so
// nothing typed is lost, and a node removed meanwhile is simply not there to write to.
document.addEventListener("htmx:afterSwap", (event) => {
  if (event.target.id !== "count-box") return;
  const data = document.getElementById("count-errors");
  const errors = data ? JSON.parse(data.dataset.errors) : {};
  document.querySelectorAll("#builder .seg-error").forEach((slot) => {
    const messages = errors[slot.id.slice(4)] || [];
    slot.textContent = messages.join(" ");
    slot.closest("fieldset").classList.toggle("seg-bad", messages.length > 0);
  });
});
