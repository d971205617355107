"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const d = Envx.data("totals-data");
  const box = document.getElementById("totals-chart");
  if (!d || !box) return;
  const series = [{key: "issued", label: d.labels.issued, color: "#14532d"}, {key: "retired", label: d.labels.retired, color: "#6b8fb3"},
                  {key: "pledged", label: d.labels.pledged, color: "#b7791f"}, {key: "frozen", label: d.labels.frozen, color: "#8b1a1a"}];
  const rows = d.rows.filter(r => r.issued !== "0" && Number(r.issued) !== 0).map(r => ({label: r.label, values: r}));
  Envx.bars(box, rows, series, box.getAttribute("aria-label"));
});
