// The segment builder's one script.
//
// Errors: the live count's errors (#count-errors, from console.segment_count) are written
// into the error slot of the node each names, and the slots of the other nodes are
// cleared. A node removed meanwhile is simply not there to write to.
//
// Redraws: a changed field, operator or group, and the add and remove buttons, post the
// form and get the builder back (#builder, hx-sync "replace": only the newest redraw
// lands, and it carries everything on the screen). What is typed into a box while a
// redraw is on its way is not in it, so it is put back once the redraw lands, into the
// same box if the box is still there and still the same kind of control.
let typed = new Map();

document.addEventListener("htmx:beforeRequest", (event) => {
  if (event.detail.target && event.detail.target.id === "builder") typed = new Map();
});

document.addEventListener("input", (event) => {
  const box = event.target;
  if (!box.id || !box.closest("#builder")) return;
  typed.set(box.id, {
    tag: box.tagName, type: box.type, name: box.name,
    value: box.type === "checkbox" ? box.checked : box.value,
  });
});

document.addEventListener("htmx:afterSwap", (event) => {
  if (event.target.id === "builder") {
    typed.forEach((was, id) => {
      const box = document.getElementById(id);
      if (!box || box.tagName !== was.tag || box.type !== was.type || box.name !== was.name) return;
      if (box.type === "checkbox") box.checked = was.value;
      else if (box.tagName !== "SELECT" || [...box.options].some((o) => o.value === was.value)) box.value = was.value;
    });
    typed = new Map();
    return;
  }
  if (event.target.id !== "count-box") return;
  const data = document.getElementById("count-errors");
  const errors = data ? JSON.parse(data.dataset.errors) : {};
  document.querySelectorAll("#builder .seg-error").forEach((slot) => {
    const messages = errors[slot.id.slice(4)] || [];
    slot.textContent = messages.join(" ");
    slot.closest("fieldset").classList.toggle("seg-bad", messages.length > 0);
  });
});
