/* envx portal: certificates, receipts and tlog-proofs verified IN THE BROWSER.
 * SHA-256 and Ed25519 are WebCrypto's (crypto.subtle); nothing here trusts the server's verdict: the page
 * fetches only the registry's published keys (GET /v1/ledger/keys, /v1/public/inquiry-key) and, for a code,
 * the certificate document, then runs the same steps as the Python verifier (ledger/receipt.py,
 * ledger/certificate.py, ledger/tlog_proof.py, pledges/certificate.py). */
"use strict";
window.EnvxVerify = (function () {
  const enc = new TextEncoder(), dec = new TextDecoder("utf-8", {fatal: true});
  class Fail extends Error { constructor(code, msg) { super(msg); this.code = code; } }

  function b64(text, what) {
    if (typeof text !== "string") throw new Fail("malformed", `${what} must be a base64 string`);
    let bin;
    try { bin = atob(text); } catch (e) { throw new Fail("malformed", `${what} is not base64`); }
    const out = Uint8Array.from(bin, c => c.charCodeAt(0));
    if (toB64(out) !== text) throw new Fail("malformed", `${what} is not canonical base64`);
    return out;
  }
  function toB64(bytes) { let s = ""; bytes.forEach(b => { s += String.fromCharCode(b); }); return btoa(s); }
  function hex(bytes) { return Array.from(bytes, b => b.toString(16).padStart(2, "0")).join(""); }
  function cat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0)); let i = 0;
    for (const p of parts) { out.set(p, i); i += p.length; }
    return out;
  }
  function eq(a, b) { return a.length === b.length && a.every((x, i) => x === b[i]); }
  async function sha256(bytes) { return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)); }
  const leafHash = d => sha256(cat(Uint8Array.of(0), d));
  const nodeHash = (l, r) => sha256(cat(Uint8Array.of(1), l, r));

  /* C2SP verifier key: name+hexkeyid+base64(0x01 || 32-byte key); key id = SHA-256(name \n 0x01 key)[:4]. */
  async function verifier(vkey) {
    const a = vkey.indexOf("+"), b = vkey.indexOf("+", a + 1);
    if (a < 1 || b < 0) throw new Fail("invalid_key", "a key is name+id+data");
    const name = vkey.slice(0, a), id = vkey.slice(a + 1, b), raw = b64(vkey.slice(b + 1), "key data");
    if (!/^[0-9a-f]{8}$/.test(id) || raw.length !== 33 || raw[0] !== 1) throw new Fail("invalid_key", "not an Ed25519 key");
    const pub = raw.slice(1);
    const kid = (await sha256(cat(enc.encode(name + "\n"), Uint8Array.of(1), pub))).slice(0, 4);
    if (hex(kid) !== id) throw new Fail("invalid_key", `key id ${id} does not match ${name}'s key`);
    const key = await crypto.subtle.importKey("raw", pub, {name: "Ed25519"}, false, ["verify"]);
    return {name, id, key, text: vkey};
  }

  function parseNote(note) {
    if (typeof note !== "string") throw new Fail("malformed", "the note is not text");
    const i = note.lastIndexOf("\n\n");
    if (i < 0) throw new Fail("malformed", "the note has no blank line before its signatures");
    const text = note.slice(0, i + 1), block = note.slice(i + 2);
    if (!block.endsWith("\n")) throw new Fail("malformed", "the note has no signature lines");
    const sigs = block.slice(0, -1).split("\n").map(line => {
      if (!line.startsWith("\u2014 ")) throw new Fail("malformed", "a signature line does not start with an em dash");
      const rest = line.slice(2), sp = rest.indexOf(" ");
      if (sp < 1) throw new Fail("malformed", "a signature line is '— <name> <base64>'");
      const raw = b64(rest.slice(sp + 1), "signature");
      if (raw.length < 5) throw new Fail("malformed", "a signature is too short");
      return {name: rest.slice(0, sp), id: hex(raw.slice(0, 4)), sig: raw.slice(4)};
    });
    return {text, sigs};
  }

  /* As ledger.note.open_note: unknown keys are ignored, every trusted key's signature must verify. */
  async function openNote(note, verifiers) {
    const n = parseNote(note), msg = enc.encode(n.text), by = [];
    for (const s of n.sigs) {
      const v = verifiers.find(k => k.name === s.name && k.id === s.id);
      if (!v) continue;
      if (s.sig.length !== 64 || !(await crypto.subtle.verify({name: "Ed25519"}, v.key, s.sig, msg)))
        throw new Fail("bad_signature", `the signature by ${v.name}+${v.id} does not verify`);
      if (!by.includes(v)) by.push(v);
    }
    if (!by.length) throw new Fail("unknown_key", "not signed by any of the registry's keys (signed by: " +
      n.sigs.map(s => `${s.name}+${s.id}`).join(", ") + ")");
    return {text: n.text, by};
  }

  function parseCheckpoint(text) {
    const lines = text.slice(0, -1).split("\n");
    if (!text.endsWith("\n") || lines.length < 3) throw new Fail("malformed", "a checkpoint is origin, size, root");
    if (!/^(0|[1-9][0-9]{0,19})$/.test(lines[1])) throw new Fail("malformed", "the checkpoint size is not a number");
    const root = b64(lines[2], "checkpoint root");
    if (root.length !== 32) throw new Fail("malformed", "the root is not 32 bytes");
    return {origin: lines[0], size: BigInt(lines[1]), root};
  }

  /* RFC 9162 2.1.3.2, as ledger.merkle.root_from_inclusion_proof (BigInt: sizes beyond 2^31). */
  async function rootFromInclusion(leaf, index, size, proof) {
    let fn = BigInt(index), sn = BigInt(size) - 1n, r = leaf;
    if (fn > sn) return null;
    for (const p of proof) {
      if (sn === 0n) return null;
      if ((fn & 1n) || fn === sn) {
        r = await nodeHash(p, r);
        while (!(fn & 1n) && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      } else r = await nodeHash(r, p);
      fn >>= 1n; sn >>= 1n;
    }
    return sn === 0n ? r : null;
  }

  /* RFC 9162 2.1.4.2, as ledger.merkle.verify_consistency. */
  async function verifyConsistency(m, n, oldRoot, newRoot, proof) {
    m = BigInt(m); n = BigInt(n);
    if (m > n) return false;
    if (m === n) return !proof.length && eq(oldRoot, newRoot);
    if (m === 0n) return !proof.length;
    if (!proof.length) return false;
    const path = [...proof];
    if ((m & (m - 1n)) === 0n) path.unshift(oldRoot);
    let fn = m - 1n, sn = n - 1n;
    while (fn & 1n) { fn >>= 1n; sn >>= 1n; }
    let fr = path[0], sr = path[0];
    for (const c of path.slice(1)) {
      if (sn === 0n) return false;
      if ((fn & 1n) || fn === sn) {
        fr = await nodeHash(c, fr); sr = await nodeHash(c, sr);
        while (!(fn & 1n) && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      } else sr = await nodeHash(sr, c);
      fn >>= 1n; sn >>= 1n;
    }
    return sn === 0n && eq(fr, oldRoot) && eq(sr, newRoot);
  }

  /* RFC 8785 canonical JSON for what certificates hold (strings, integers, booleans, null, arrays, objects). */
  function canonical(v) {
    if (v === null || typeof v === "boolean" || typeof v === "string") return JSON.stringify(v);
    if (typeof v === "number") {
      if (!Number.isSafeInteger(v)) throw new Fail("malformed", "a number that is not a safe integer");
      return String(v);
    }
    if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
    return "{" + Object.keys(v).sort().map(k => JSON.stringify(k) + ":" + canonical(v[k])).join(",") + "}";
  }

  /* Money and quantities as exact integers (BigInt): "12.50" -> 1250n; a quantity with its decimals. */
  function fen(s, what) {
    if (typeof s !== "string" || !/^-?[0-9]+\.[0-9]{2}$/.test(s)) throw new Fail("malformed", `${what} is not an amount such as "12.50"`);
    return BigInt(s.replace(".", ""));
  }
  function scaled(s, d) {
    const [i, f = ""] = String(s).split(".");
    return BigInt(i + f.padEnd(d, "0"));
  }

  /* A blinded entry's commitment, as ledger/blinding.py: SHA-256(tag ‖ salt ‖ value, 8 bytes big-endian), hex;
   * tag "envx-acct/1\n" for debit and credit, "envx-hold/1\n" for hold, "envx-amt/1\n" for the amounts.
   * Which fields are commitments is the entry version's: version 3 the accounts and holds, version 4 the
   * amounts too (amount, released, remaining, keep). */
  const AMT = "envx-amt/1\n";
  const TAGS = {debit: "envx-acct/1\n", credit: "envx-acct/1\n", hold: "envx-hold/1\n",
                amount: AMT, released: AMT, remaining: AMT, keep: AMT};
  const FIELDS = {"3": ["debit", "credit", "hold"], "4": ["debit", "credit", "hold", "amount", "released", "remaining", "keep"]};
  async function commitment(field, saltHex, value) {
    if (!(field in TAGS)) throw new Fail("malformed", `${field} is not a blinded field`);
    if (typeof saltHex !== "string" || !/^[0-9a-f]{64}$/.test(saltHex)) throw new Fail("malformed", "a salt is 32 bytes of hex");
    if (!Number.isSafeInteger(value) || value < 0) throw new Fail("malformed", "an opened value is a non-negative integer");
    const salt = Uint8Array.from(saltHex.match(/../g), h => parseInt(h, 16));
    const v = new Uint8Array(8); new DataView(v.buffer).setBigUint64(0, BigInt(value));
    return hex(await sha256(cat(enc.encode(TAGS[field]), salt, v)));
  }
  /* Each opening of the receipt must open the commitment the entry holds at its leg and field. */
  async function checkOpenings(entry, openings) {
    const fields = FIELDS[String(entry.v)], legs = entry.body && entry.body.legs, out = [];
    if (String(entry.v) === "4") {  /* every field version 4 blinds is a commitment, opened or not */
      for (const [i, leg] of (Array.isArray(legs) ? legs : []).entries())
        for (const f of fields)
          if (leg && leg.body && f in leg.body && !(typeof leg.body[f] === "string" && /^[0-9a-f]{64}$/.test(leg.body[f])))
            throw new Fail("malformed", `leg ${i}'s ${f} is not a commitment in a version-4 entry`);
    }
    if (!Array.isArray(openings) || !openings.length) return [];
    if (!fields) throw new Fail("malformed", "openings belong to a blinded (version-3 or -4) entry only");
    for (const o of openings) {
      if (!fields.includes(o.field)) throw new Fail("malformed", `${o.field} is not a blinded field of a version-${entry.v} entry`);
      const leg = legs && Number.isSafeInteger(o.leg) ? legs[o.leg] : undefined;
      const c = leg && leg.body ? leg.body[o.field] : undefined;
      if (typeof c !== "string" || await commitment(o.field, o.salt, o.value) !== c)
        throw new Fail("opening_mismatch", `the opening of leg ${o.leg} ${o.field} does not open its commitment`);
      out.push(`leg ${o.leg} ${o.field} = ${o.value}`);
    }
    return out;
  }

  return {Fail, b64, toB64, hex, eq, cat, sha256, leafHash, verifier, parseNote, openNote, parseCheckpoint,
          rootFromInclusion, verifyConsistency, canonical, fen, scaled, enc, dec, commitment, checkOpenings};
})();

/* ---------------------------------------------------------------------------------------------- the page */
(function () {
  const V = window.EnvxVerify;
  const zh = document.body && document.body.dataset.lang !== "en";
  const W = zh ? {
    read: "读取文件", keys: "获取登记机构公布的公钥并核对密钥编号", cert_sig: "证书签名 (Ed25519)", body: "证书内容",
    cp_sig: "检查点签名 (Ed25519)", size: "树大小与检查点一致", leaf: "叶子哈希 SHA-256(0x00 ‖ 条目)",
    inclusion: "包含证明重现签名的根哈希", entry: "条目为本案的司法修复注销", meta: "元数据摘要、序列号与案号",
    quantity: "数量合计", amounts: "金额合计", digest: "证书摘要 SHA-256 (RFC 8785) 与签名一致", decode: "解读条目（序号、类型、时间）", openings: "本方账户与金额的承诺值与盐值相符（对手方不公开）", pass: "通过", fail: "未通过",
    ok_all: "核验通过：每一步都在您的浏览器中完成。", failed_at: "核验未通过，失败步骤：", fetch: "按核验码获取证书",
    entry_n: "条目", nothing: "无法识别的文件（需要证书、查询证明、回执 JSON 或 .tlog-proof）", no_crypto: "此浏览器不支持 WebCrypto Ed25519。"
  } : {
    read: "Read the file", keys: "Fetch the registry's published keys and check their key ids", cert_sig: "Certificate signature (Ed25519)",
    body: "Certificate body", cp_sig: "Checkpoint signature (Ed25519)", size: "Tree size matches the checkpoint",
    leaf: "Leaf hash SHA-256(0x00 ‖ entry)", inclusion: "Inclusion proof reproduces the signed root",
    entry: "The entry is this case's judicial restoration retirement", meta: "Metadata digest, serials and case",
    quantity: "Quantities add up", amounts: "Amounts add up", digest: "Certificate digest SHA-256 (RFC 8785) equals the signed one",
    decode: "Read the entry (seq, type, time)", openings: "Your own accounts and amounts open their commitments (the other side's stay hidden)",
    pass: "passed",
    fail: "FAILED", ok_all: "Verified: every step ran in your browser.", failed_at: "Verification failed at step: ",
    fetch: "Fetch the certificate by its code", entry_n: "entry", nothing: "Not a file this page knows (certificate, search certificate, receipt JSON or .tlog-proof)",
    no_crypto: "This browser has no WebCrypto Ed25519."
  };
  let list, verdict, keyList;

  function step(key, suffix) {
    const li = document.createElement("li");
    li.dataset.step = key;
    const mark = document.createElement("span"); mark.className = "mark";
    const name = document.createElement("span"); name.className = "name"; name.textContent = W[key] + (suffix ? ` (${suffix})` : "");
    const detail = document.createElement("span"); detail.className = "detail";
    li.append(mark, name, detail); list.appendChild(li);
    return {
      pass(text) { li.className = "pass"; li.dataset.state = "pass"; mark.textContent = "✓ " + W.pass; detail.textContent = text || ""; },
      fail(text) { li.className = "fail"; li.dataset.state = "fail"; mark.textContent = "✗ " + W.fail; detail.textContent = text || ""; },
    };
  }

  /* Runs fn for one step: its result passes it, a throw fails it and stops the whole check. */
  async function run(key, fn, suffix) {
    const s = step(key, suffix);
    try { const r = await fn(); s.pass(typeof r === "string" ? r : ""); return r; }
    catch (e) { s.fail(e.message || String(e)); const err = new Error(W[key]); err.step = key; err.cause = e; throw err; }
  }

  async function registryKeys(extra) {
    const keys = (await (await fetch("/v1/ledger/keys")).json()).map(k => k.verifier_key);
    if (extra) {
      const r = await fetch("/v1/public/inquiry-key");
      if (r.ok) keys.push((await r.json()).verifier_key);
    }
    const out = [];
    for (const k of new Set(keys)) out.push(await V.verifier(k));
    keyList.replaceChildren(...out.map(k => Object.assign(document.createElement("li"), {textContent: k.text})));
    return out;
  }

  /* One receipt's steps: its checkpoint's signature, its tree size (a JSON receipt states it; a tlog-proof
   * takes it from the checkpoint, tree_size null), the leaf hash of its entry, the inclusion proof. */
  async function checkReceipt(r, keys, label) {
    const cp = await run("cp_sig", async () => {
      const o = await V.openNote(r.checkpoint, keys), c = V.parseCheckpoint(o.text);
      // A checkpoint names its log on its first line, and the log's key bears that name (C2SP tlog-checkpoint).
      if (!o.by.some(k => k.name === c.origin)) throw new V.Fail("wrong_origin", `the checkpoint is of ${c.origin}, signed by ${o.by.map(k => k.name).join(", ")}`);
      return c;
    }, label);
    list.lastChild.querySelector(".detail").textContent = `${cp.origin} @ ${cp.size}`;
    if (r.tree_size !== null) await run("size", async () => {
      if (!/^(0|[1-9][0-9]{0,19})$/.test(String(r.tree_size)) || BigInt(r.tree_size) !== cp.size)
        throw new Error(`receipt tree_size ${r.tree_size} ≠ checkpoint size ${cp.size}`);
      return `${cp.size}`;
    }, label);
    const entry = await run("leaf", async () => V.b64(r.entry, "entry"), label);
    const leaf = await V.leafHash(entry);
    list.lastChild.querySelector(".detail").textContent = V.hex(leaf);
    await run("inclusion", async () => {
      const path = (r.inclusion_path || []).map((p, i) => V.b64(p, `inclusion_path[${i}]`));
      if (path.length > 64 || path.some(p => p.length !== 32)) throw new V.Fail("malformed", "an inclusion path is at most 64 hashes of 32 bytes");
      if (!/^(0|[1-9][0-9]{0,19})$/.test(String(r.index))) throw new V.Fail("malformed", "the leaf index is not a number");
      const root = await V.rootFromInclusion(leaf, r.index, cp.size, path);
      if (!root || !V.eq(root, cp.root)) throw new Error(`entry ${r.index} and its path do not reproduce the signed root ${V.toB64(cp.root)}`);
      return `root ${V.toB64(root)} = ${cp.origin} @ ${cp.size}`;
    }, label);
    return entry;
  }

  /* An entry's bytes: "envx-entry/<version>\n" then its canonical JSON (ledger/encoding.py). */
  function decodeEntry(bytes) {
    // Version 1 (one movement), 2 (an event of several legs), 3 (an event whose accounts and holds are
    // commitments, ledger/blinding.py) and 4 (its amounts too) differ in their tag only here.
    const text = V.dec.decode(bytes), m = /^envx-entry\/([1234])\n/.exec(text);
    if (!m) throw new Error("not an envx ledger entry");
    const e = JSON.parse(text.slice(m[0].length));
    if (!e || String(e.v) !== m[1]) throw new Error("the entry's version differs from its tag");
    return e;
  }

  async function restoration(doc) {
    const keys = await run("keys", () => registryKeys(false));
    const opened = await run("cert_sig", async () => {
      const o = await V.openNote(doc.note, keys);
      return o;
    });
    const HEADER = "envx restoration certificate v1\n";
    const body = await run("body", async () => {
      if (!opened.text.startsWith(HEADER)) throw new Error("the signed note is not a restoration certificate");
      const b = JSON.parse(opened.text.slice(HEADER.length));
      if (!Array.isArray(b.blocks) || !b.blocks.length || !b.order) throw new Error("no order or no retired blocks");
      // Exactly one receipt for each entry the blocks name: no copies, none of other entries.
      const named = new Set(b.blocks.map(x => Number(x.entry_seq))), seen = new Set();
      for (const r of (Array.isArray(doc.receipts) ? doc.receipts : [])) {
        const seq = r && r.metadata && r.metadata.seq;
        if (seen.has(seq)) throw new Error(`ledger entry ${seq} has more than one receipt`);
        if (!named.has(seq)) throw new Error(`a receipt for entry ${seq}, which no retired block names`);
        seen.add(seq);
      }
      return b;
    });
    list.lastChild.querySelector(".detail").textContent = `${body.order.court} ${body.order.case_number}: ${body.retired_quantity} ${body.unit || "tCO2e"}`;
    const bySeq = new Map((doc.receipts || []).map(r => [r && r.metadata && r.metadata.seq, r]));
    const wanted = new Map();
    body.blocks.forEach(b => { const k = Number(b.entry_seq); if (!wanted.has(k)) wanted.set(k, []); wanted.get(k).push(b); });
    let retired = 0n;
    for (const [seq, blocks] of [...wanted.entries()].sort((a, b) => a[0] - b[0])) {
      const label = `${W.entry_n} ${seq}`;
      const r = bySeq.get(seq);
      if (!r) { await run("cp_sig", async () => { throw new Error(`no receipt for ledger entry ${seq}`); }, label); }
      const bytes = await checkReceipt(r, keys, label);
      const entry = await run("entry", async () => {
        const e = decodeEntry(bytes);
        if (e.seq !== seq) throw new Error(`the receipt for ${seq} proves entry ${e.seq}`);
        if (e.type !== "retire" || e.body.purpose !== "judicial_restoration") throw new Error(`entry ${seq} is a ${e.type} (${e.body.purpose || "no purpose"})`);
        return e;
      }, label);
      await run("meta", async () => {
        const metaText = (r.metadata || {}).meta;
        if (typeof metaText !== "string" || V.hex(await V.sha256(V.enc.encode(metaText))) !== entry.meta)
          throw new Error("the metadata does not match what the entry commits to");
        const meta = JSON.parse(metaText);
        const ranges = (meta.serials || []).map(([s, e]) => `${s}-${e}`).sort().join(",");
        const listed = blocks.map(b => `${b.serial_start}-${b.serial_end}`).sort().join(",");
        if (ranges !== listed || blocks.some(b => b.instrument !== entry.body.instrument))
          throw new Error(`entry ${seq} retired ${ranges} of ${entry.body.instrument}, the certificate lists ${listed}`);
        const rs = meta.restoration || {};
        if (rs.case_number !== body.order.case_number || rs.restoration_order !== body.order.id) throw new Error(`entry ${seq} retired units for another case`);
        if ("price" in meta && blocks.some(b => V.fen(b.price, "price") !== BigInt(meta.price))) throw new Error("the price differs from the ledger's");
        return `${entry.body.instrument} ${listed}`;
      }, label);
      retired += BigInt(entry.body.amount);
    }
    await run("quantity", async () => {
      const claimed = body.blocks.reduce((n, b) => n + BigInt(b.serial_end) - BigInt(b.serial_start) + 1n, 0n);
      if (claimed !== retired) throw new Error(`blocks add up to ${claimed}, the entries retired ${retired}`);
      return `${body.retired_quantity} ${body.unit || "tCO2e"}`;
    });
    if (body.blocks.some(b => "value" in b)) await run("amounts", async () => {
      let value = 0n, fees = 0n;
      for (const [seq, blocks] of wanted) {
        let v = 0n, qty = "0", d = 0;
        for (const b of blocks) {
          const bv = V.fen(b.value, "value"), bf = V.fen(b.fee, "fee"), bp = V.fen(b.paid, "paid");
          if (bv + bf !== bp) throw new Error(`block ${b.serial_start}-${b.serial_end}: ${b.value} + ${b.fee} ≠ ${b.paid}`);
          v += bv; fees += bf;
          d = Math.max(d, (String(b.quantity).split(".")[1] || "").length);
        }
        const q = blocks.reduce((n, b) => n + V.scaled(b.quantity, d), 0n);
        if (v * 10n ** BigInt(d) !== V.fen(blocks[0].price, "price") * q) throw new Error(`entry ${seq}: value ≠ price × quantity`);
        value += v; qty = q;
      }
      const t = body.totals || {};
      if (V.fen(t.value, "total value") !== value || V.fen(t.fees, "total fees") !== fees ||
          V.fen(t.paid, "total paid") !== value + fees || V.fen(body.paid, "paid") !== value + fees)
        throw new Error("the totals are not the sums of the blocks");
      return `${body.paid} CNY`;
    });
  }

  async function receipt(doc) {
    const keys = await run("keys", () => registryKeys(false));
    const bytes = await checkReceipt(doc, keys, `index ${doc.index}`);
    await run("decode", async () => {
      const e = decodeEntry(bytes);
      if (BigInt(e.seq) !== BigInt(doc.index) + 1n) throw new Error(`leaf ${doc.index} holds entry ${e.seq}`);
      return `seq ${e.seq} · ${e.type} · ${e.ts ? new Date(Number(BigInt(e.ts) / 1000n)).toISOString() : ""}`;
    });
    if ((Array.isArray(doc.openings) && doc.openings.length) || String(decodeEntry(bytes).v) === "4")
      await run("openings", async () => (await V.checkOpenings(decodeEntry(bytes), doc.openings)).join(", "));
  }

  /* c2sp.org/tlog-proof@v1 (ledger/tlog_proof.py): header, "extra <base64 entry>", "index <n>", the inclusion
   * path one hash a line, a blank line, the checkpoint note (the registry's signature, witnesses' cosignatures). */
  function parseTlogProof(text) {
    const cut = text.indexOf("\n\n");
    if (cut < 0) throw new Error("a tlog-proof is its header lines, a blank line, then the checkpoint");
    const head = text.slice(0, cut).split("\n"), checkpoint = text.slice(cut + 2);
    if (head[0] !== "c2sp.org/tlog-proof@v1") throw new Error("not a c2sp.org/tlog-proof@v1 proof");
    let i = 1, extra = null;
    if (head[i] && head[i].startsWith("extra ")) { extra = head[i].slice(6); i++; }
    const m = /^index (0|[1-9][0-9]{0,19})$/.exec(head[i] || "");
    if (!m) throw new Error("no 'index <n>' line");
    if (extra === null) throw new Error("the proof carries no entry ('extra' line): nothing to check it against");
    V.b64(extra, "extra data");
    return {entry: extra, index: m[1], tree_size: null, inclusion_path: head.slice(i + 1), checkpoint};
  }

  async function tlogProof(p) {
    const keys = await run("keys", () => registryKeys(false));
    const bytes = await checkReceipt(p, keys, `index ${p.index}`);
    await run("decode", async () => {
      const e = decodeEntry(bytes);
      if (BigInt(e.seq) !== BigInt(p.index) + 1n) throw new Error(`leaf ${p.index} holds entry ${e.seq}`);
      return `seq ${e.seq} · ${e.type}`;
    });
  }

  /* 查询证明 (pledges/certificate.py): the signed note says "envx public inquiry certificate v1", the key's name
   * and the hex SHA-256 of the certificate's RFC 8785 JSON; the page recomputes that digest itself. */
  async function searchCertificate(doc, keys, label) {
    const signed = await run("cert_sig", async () => {
      const o = await V.openNote((doc.signature || {}).note, keys);
      const lines = o.text.split("\n");
      if (lines.length !== 4 || lines[0] !== "envx public inquiry certificate v1" || lines[1] !== o.by[0].name ||
          !/^[0-9a-f]{64}$/.test(lines[2]) || lines[3] !== "") throw new Error("the signed note is not a search certificate");
      return {digest: lines[2], by: `${o.by[0].name}+${o.by[0].id}`};
    }, label);
    list.lastChild.querySelector(".detail").textContent = signed.by;
    await run("digest", async () => {
      const mine = V.hex(await V.sha256(V.enc.encode(V.canonical(doc.certificate))));
      if (mine !== signed.digest) throw new Error(`this certificate's digest is ${mine}, the signed one ${signed.digest}`);
      const c = doc.certificate, h = c.ledger_head || {};
      return `${mine} · ${c.record}: ${c.result_count} · ${c.issued_at} · ledger ${h.seq}`;
    }, label);
  }

  /* One certificate, or the list of them a search of every record makes (the JSON attached to the PDF). */
  async function searchCertificates(docs) {
    const keys = await run("keys", () => registryKeys(true));
    for (const doc of docs) await searchCertificate(doc, keys, docs.length > 1 ? String(doc.certificate.record) : "");
  }

  async function check(text) {
    list.replaceChildren(); verdict.textContent = ""; verdict.className = "verdict";
    try {
      if (!(window.crypto && crypto.subtle)) throw Object.assign(new Error(W.no_crypto), {step: "keys"});
      let doc = null;
      const kind = await run("read", async () => {
        if (text.startsWith("c2sp.org/tlog-proof@v1\n")) { doc = parseTlogProof(text); return "tlog-proof"; }
        try { doc = JSON.parse(text); } catch (e) { throw new Error(W.nothing); }
        if (doc && doc.format === "envx-restoration-certificate-v1") return doc.format;
        if (doc && doc.format === "envx-receipt-v1") return doc.format;
        const search = d => d && typeof d === "object" && d.certificate && d.signature && d.certificate.type === "envx.public-inquiry/1";
        if (search(doc)) { doc = [doc]; return "search"; }
        if (Array.isArray(doc) && doc.length && doc.every(search)) return "search";
        throw new Error(W.nothing);
      });
      if (kind === "tlog-proof") await tlogProof(doc);
      else if (kind === "envx-restoration-certificate-v1") await restoration(doc);
      else if (kind === "envx-receipt-v1") await receipt(doc);
      else await searchCertificates(doc);
      verdict.textContent = W.ok_all; verdict.className = "verdict pass"; verdict.dataset.state = "pass";
    } catch (e) {
      verdict.textContent = W.failed_at + (e.step ? W[e.step] : e.message);
      verdict.className = "verdict fail"; verdict.dataset.state = "fail"; verdict.dataset.step = e.step || "";
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const drop = document.getElementById("dropzone");
    if (!drop) return;  // the ledger page uses the functions only
    list = document.getElementById("steps"); verdict = document.getElementById("verdict"); keyList = document.getElementById("keys");
    const file = document.getElementById("file");
    const readFile = f => f && f.text().then(check);
    file.addEventListener("change", () => readFile(file.files[0]));
    drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", e => { e.preventDefault(); drop.classList.remove("over"); readFile(e.dataTransfer.files[0]); });
    const cfg = Envx.data("verify-config");
    if (cfg && cfg.code) {
      (async () => {
        list.replaceChildren();
        const r = await fetch(`/v1/public/certificates/${encodeURIComponent(cfg.code.toLowerCase())}`);
        const answer = r.ok ? await r.json() : null;
        if (!answer || !answer.certificate) {
          const s = step("fetch"); s.fail(answer ? (answer.detail || answer.reason || "") : `HTTP ${r.status}`);
          verdict.textContent = W.failed_at + W.fetch; verdict.className = "verdict fail"; verdict.dataset.state = "fail";
          verdict.dataset.step = "fetch";
          return;
        }
        await check(JSON.stringify(answer.certificate));
      })();
    } else if (cfg && cfg.bad_code) {
      const s = step("fetch"); s.fail("0-9 a-f × 16");
      verdict.textContent = W.failed_at + W.fetch; verdict.className = "verdict fail"; verdict.dataset.state = "fail";
      verdict.dataset.step = "fetch";
    }
  });
  window.EnvxVerifyPage = {check};
})();
