/* envx portal: the ledger's size over time, and a consistency check between two checkpoints done here:
 * both notes' signatures against the published keys, their roots, and the RFC 9162 consistency proof. */
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const V = window.EnvxVerify, zh = document.body.dataset.lang !== "en";
  const W = zh ? {sizes: "两个树大小（较早 ≤ 较新）", keys: "获取公钥", sig1: "较早检查点的签名", sig2: "较新检查点的签名", proof: "一致性证明 (SHA-256)", ok: "一致：较新的树包含较早的树。",
                  bad: "不一致或无法核验，失败步骤：", order: "较早的树大小须 ≤ 较新的"}
               : {sizes: "The two tree sizes (older ≤ newer)", keys: "Fetch the keys", sig1: "Older checkpoint's signature", sig2: "Newer checkpoint's signature", proof: "Consistency proof (SHA-256)",
                  ok: "Consistent: the newer tree extends the older one.", bad: "Inconsistent or not verifiable, failed at step: ",
                  order: "The older tree size must be ≤ the newer one"};
  const growth = Envx.data("growth-data") || [];
  const box = document.getElementById("growth-chart");
  if (box) {
    const pts = growth.map(g => ({t: (g.at || "").slice(0, 16).replace("T", " "), o: String(g.size), h: String(g.size), l: String(g.size), c: String(g.size), v: "0"}));
    Envx.priceChart(box, pts, box.getAttribute("aria-label"), "—");
  }
  const form = document.getElementById("consistency");
  if (!form) return;
  const list = document.getElementById("steps"), verdict = document.getElementById("verdict");
  function item(key, ok, detail) {
    const li = document.createElement("li");
    li.className = ok ? "pass" : "fail"; li.dataset.state = ok ? "pass" : "fail"; li.dataset.step = key;
    li.textContent = `${ok ? "✓" : "✗"} ${W[key]}${detail ? ": " + detail : ""}`; list.appendChild(li);
  }
  /* One step: its result passes it, a throw fails it (marked with its name) and stops the check. */
  async function run(key, fn) {
    try { const r = await fn(); item(key, true, r.detail); return r.value; }
    catch (e) { item(key, false, e.message || String(e)); throw Object.assign(new Error(e.message), {step: key}); }
  }
  const size = v => {
    if (!/^(0|[1-9][0-9]{0,19})$/.test(v)) throw new Error(`${v}: not a tree size`);
    return BigInt(v);
  };
  /* The signed checkpoint of exactly this size, opened with the registry's keys. */
  async function checkpoint(n, keys) {
    const got = await (await fetch(`/v1/ledger/checkpoints?before=${n + 1n}&limit=1`)).json();
    const c = Array.isArray(got) ? got[0] : null;
    if (!c || String(c.tree_size) !== String(n)) throw new Error(`no checkpoint of size ${n}`);
    const cp = V.parseCheckpoint((await V.openNote(c.checkpoint, keys)).text);
    if (cp.size !== n) throw new Error(`the note signed is of size ${cp.size}, not ${n}`);
    return {value: cp, detail: `${cp.origin} @ ${cp.size}: ${V.toB64(cp.root)}`};
  }
  form.addEventListener("submit", async e => {
    e.preventDefault();
    list.replaceChildren(); verdict.className = "verdict"; verdict.textContent = "";
    delete verdict.dataset.state; delete verdict.dataset.step;
    try {
      const [m, n] = await run("sizes", async () => {
        const a = size(document.getElementById("first").value), b = size(document.getElementById("second").value);
        if (a > b) throw new Error(W.order);
        return {value: [a, b], detail: `${a} ≤ ${b}`};
      });
      const keys = await run("keys", async () => {
        const out = [];
        for (const k of await (await fetch("/v1/ledger/keys")).json()) out.push(await V.verifier(k.verifier_key));
        return {value: out, detail: out.map(k => `${k.name}+${k.id}`).join(", ")};
      });
      const a = await run("sig1", () => checkpoint(m, keys));
      const b = await run("sig2", () => checkpoint(n, keys));
      await run("proof", async () => {
        const p = await (await fetch(`/v1/ledger/proofs/consistency?first=${m}&second=${n}`)).json();
        const proof = (p.proof || []).map((h, i) => V.b64(h, `proof[${i}]`));
        if (proof.length > 128 || proof.some(h => h.length !== 32)) throw new Error("a proof is at most 128 hashes of 32 bytes");
        if (!(await V.verifyConsistency(a.size, b.size, a.root, b.root, proof)))
          throw new Error(`the ${proof.length} hashes do not lead from the root at ${a.size} to the root at ${b.size}`);
        return {value: null, detail: `${proof.length}`};
      });
      verdict.textContent = W.ok; verdict.className = "verdict pass"; verdict.dataset.state = "pass";
    } catch (err) {
      verdict.textContent = W.bad + (err.step ? W[err.step] : err.message); verdict.className = "verdict fail";
      verdict.dataset.state = "fail"; verdict.dataset.step = err.step || "";
    }
  });
});
