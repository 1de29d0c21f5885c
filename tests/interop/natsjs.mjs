// nats.js on the other side of nbnats's interop tests: writes or reads one KV bucket or object
// store and prints what it saw as one JSON line.
//   node natsjs.mjs URL kv-write|kv-read|obj-write|obj-read BUCKET
import { createHash } from "node:crypto";
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";

const [url, command, bucket] = process.argv.slice(2);
const pattern = (n) => Uint8Array.from({ length: n }, (_, i) => i % 251);
const sha256 = (data) => createHash("sha256").update(data).digest("hex");
const td = new TextDecoder();

async function entry(kv, key) {
  const e = await kv.get(key);
  if (e === null) return null;
  return { revision: e.revision, operation: e.operation, value: td.decode(e.value) };
}

// nats.js does not read credentials from the URL: pass them as options
const u = new URL(url);
const nc = await connect({ servers: `${u.hostname}:${u.port}`, timeout: 5000,
  ...(u.username ? { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) } : {}) });
const out = {};
try {
  if (command === "kv-write") {
    const kv = await new Kvm(nc).create(bucket, { history: 5 });   // nats.js: direct get on by default
    out.put = await kv.put("js.json", JSON.stringify({ from: "nats.js", n: 1 }));
    await kv.put("js.text", "hello from nats.js");
    await kv.put("js.gone", "soon deleted");
    await kv.delete("js.gone");
    out.updated = await kv.update("js.json", JSON.stringify({ from: "nats.js", n: 2 }), out.put);
  } else if (command === "kv-read") {
    const kv = await new Kvm(nc).open(bucket);
    for (const key of ["py.json", "py.text", "py.gone", "py.missing"]) out[key] = await entry(kv, key);
    out.keys = [];
    for await (const k of await kv.keys()) out.keys.push(k);
    out.keys.sort();
    out.status = { direct: (await kv.status()).streamInfo.config.allow_direct };
  } else if (command === "obj-write") {
    const os = await new Objm(nc).create(bucket);
    out.bin = await os.putBlob({ name: "js.bin", description: "from nats.js" }, pattern(300_000));
    out.text = await os.putBlob({ name: "js/notes.txt" }, new TextEncoder().encode("notes from nats.js"));
    out.sha256 = sha256(pattern(300_000));
  } else if (command === "obj-read") {
    const os = await new Objm(nc).open(bucket);
    const data = await os.getBlob("py.bin");
    const frame = await os.getBlob("py.parquet");
    const info = await os.info("py.parquet");
    out.bin = { size: data.length, sha256: sha256(data) };
    out.parquet = { size: frame.length, magic: td.decode(frame.subarray(0, 4)), headers: info.headers ? Object.fromEntries([...info.headers.keys()].map((k) => [k, info.headers.get(k)])) : null };
    out.names = (await os.list()).map((i) => i.name).sort();
  } else {
    throw new Error(`unknown command ${command}`);
  }
  console.log(JSON.stringify(out));
} finally {
  await nc.close();
}
