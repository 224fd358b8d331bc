// Runs a wasm32-wasip1 command (a `cargo test` binary) in Node.js's WASI, on V8 like Envoy.
// Used as the cargo runner: `node wasi-run.mjs <module.wasm> [test args...]`. The proxy-wasm
// host functions the filter library links (module "env") exist only in Envoy: calling one
// here fails the run.
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import { argv, env, exit } from "node:process";

const [module, ...args] = argv.slice(2);
const wasi = new WASI({ version: "preview1", args: [module, ...args], env, returnOnExit: true });
const compiled = await WebAssembly.compile(await readFile(module));
const host = {};
for (const { module: from, name } of WebAssembly.Module.imports(compiled)) {
  if (from === "env") {
    host[name] = () => { throw new Error(`proxy-wasm host function ${name} called outside Envoy`); };
  }
}
const instance = await WebAssembly.instantiate(compiled, { wasi_snapshot_preview1: wasi.wasiImport, env: host });
// The filter's `_initialize` (its proxy-wasm entry) is linked too; WASI starts a command only
// when it exports `_start` alone.
const { _start, memory } = instance.exports;
exit(wasi.start({ exports: { _start, memory } }));
