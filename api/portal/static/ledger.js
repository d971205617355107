/* envx portal: the ledger's size over time, and a consistency check between two checkpoints done here:
 * both notes' signatures against the published keys, their roots, and the RFC 9162 consistency proof. */
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const V = window.EnvxVerify, zh = document.body.dataset.lang !== "en";
  const W = zh ? {keys: "获取公钥", sig1: "较早检查点的签名", sig2: "较新检查点的签名", proof: "一致性证明 (SHA-256)", ok: "一致：较新的树包含较早的树。",
                  bad: "不一致或无法核验：", order: "请选择较早 ≤ 较新"}
               : {keys: "Fetch the keys", sig1: "Older checkpoint's signature", sig2: "Newer checkpoint's signature", proof: "Consistency proof (SHA-256)",
                  ok: "Consistent: the newer tree extends the older one.", bad: "Inconsistent or not verifiable: ", order: "Pick older ≤ newer"};
  const growth = Envx.data("growth-data") || [];
  const box = document.getElementById("growth-chart");
  if (box) {
    const pts = growth.map(g => ({t: (g.at || "").slice(0, 16).replace("T", " "), o: String(g.size), h: String(g.size), l: String(g.size), c: String(g.size), v: "0"}));
    Envx.priceChart(box, pts, box.getAttribute("aria-label"), "—");
  }
  const form = document.getElementById("consistency");
  if (!form) return;
  const list = document.getElementById("steps"), verdict = document.getElementById("verdict");
  function item(name, ok, detail) {
    const li = document.createElement("li");
    li.className = ok ? "pass" : "fail"; li.dataset.state = ok ? "pass" : "fail";
    li.textContent = `${ok ? "✓" : "✗"} ${name}${detail ? ": " + detail : ""}`; list.appendChild(li);
  }
  form.addEventListener("submit", async e => {
    e.preventDefault();
    list.replaceChildren(); verdict.className = "verdict"; verdict.textContent = "";
    const first = document.getElementById("first").value, second = document.getElementById("second").value;
    try {
      if (BigInt(first) > BigInt(second)) throw new Error(W.order);
      const keys = [];
      for (const k of await (await fetch("/v1/ledger/keys")).json()) keys.push(await V.verifier(k.verifier_key));
      item(W.keys, true, `${keys.length}`);
      const cps = await (await fetch(`/v1/ledger/checkpoints?limit=1000`)).json();
      const note = size => (cps.find(c => String(c.tree_size) === String(size)) || {}).checkpoint;
      const a = V.parseCheckpoint((await V.openNote(note(first), keys)).text); item(W.sig1, true, `${a.size} ${V.toB64(a.root)}`);
      const b = V.parseCheckpoint((await V.openNote(note(second), keys)).text); item(W.sig2, true, `${b.size} ${V.toB64(b.root)}`);
      const p = await (await fetch(`/v1/ledger/proofs/consistency?first=${first}&second=${second}`)).json();
      const proof = (p.proof || []).map((h, i) => V.b64(h, `proof[${i}]`));
      const ok = await V.verifyConsistency(a.size, b.size, a.root, b.root, proof);
      item(W.proof, ok, `${proof.length}`);
      verdict.textContent = ok ? W.ok : W.bad + W.proof; verdict.className = "verdict " + (ok ? "pass" : "fail");
      verdict.dataset.state = ok ? "pass" : "fail";
    } catch (err) {
      item(W.bad, false, err.message); verdict.textContent = W.bad + err.message; verdict.className = "verdict fail";
      verdict.dataset.state = "fail";
    }
  });
});
