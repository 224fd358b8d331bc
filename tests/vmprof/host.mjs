// A proxy-wasm host (ABI 0.2.1) in Node.js: it instantiates the built filter in Node's V8 and
// drives it as Envoy does, with the `env.proxy_*` functions the module imports behaving as
// Envoy's (header maps, buffers, shared data with CAS, metrics, HTTP callouts, local replies)
// and WASI through `node:wasi`. Every call the module makes into the host is counted by name,
// per callback, so a profile can tell what a request costs in host calls as well as in time.
//
// One request is driven at a time (the state of "the current stream" is the host's), which is
// all a profile needs. Pointers and sizes are 32-bit (wasm32); the ABI is that of the Rust SDK
// (proxy-wasm 0.2, `src/hostcalls.rs`) and of Envoy's host (proxy-wasm-cpp-host).

import { readFileSync } from "node:fs";
import { WASI } from "node:wasi";

/** `proxy_wasm::types::Status`. */
export const Status = { Ok: 0, NotFound: 1, BadArgument: 2, CasMismatch: 8 };
/** `proxy_wasm::types::MapType`. */
export const MapType = {
  RequestHeaders: 0, RequestTrailers: 1, ResponseHeaders: 2, ResponseTrailers: 3,
  CallResponseHeaders: 6, CallResponseTrailers: 7,
};
/** `proxy_wasm::types::BufferType`. */
export const BufferType = {
  RequestBody: 0, ResponseBody: 1, CallResponseBody: 4, VmConfiguration: 6, PluginConfiguration: 7,
};
/** `proxy_wasm::types::Action`. */
export const Action = { Continue: 0, Pause: 1 };
const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "critical"];

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A header map in the ABI's form: count, then each key's and value's size, then each key and
 * value NUL-terminated (all sizes little-endian u32). */
export function serializeMap(pairs) {
  const encoded = pairs.map(([k, v]) => [encoder.encode(k), typeof v === "string" ? encoder.encode(v) : v]);
  const size = encoded.reduce((n, [k, v]) => n + 8 + k.length + 1 + v.length + 1, 4);
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, encoded.length, true);
  let p = 4 + encoded.length * 8;
  encoded.forEach(([k, v], i) => {
    view.setUint32(4 + i * 8, k.length, true);
    view.setUint32(8 + i * 8, v.length, true);
    bytes.set(k, p); p += k.length + 1;
    bytes.set(v, p); p += v.length + 1;
  });
  return bytes;
}

export function deserializeMap(bytes) {
  if (bytes.length === 0) return [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint32(0, true);
  const pairs = [];
  let p = 4 + count * 8;
  for (let i = 0; i < count; i++) {
    const k = view.getUint32(4 + i * 8, true);
    const v = view.getUint32(8 + i * 8, true);
    const key = decoder.decode(bytes.subarray(p, p + k)); p += k + 1;
    const value = decoder.decode(bytes.subarray(p, p + v)); p += v + 1;
    pairs.push([key, value]);
  }
  return pairs;
}

/** The state of one HTTP stream as Envoy holds it: its header maps and body buffers. */
export class StreamState {
  constructor(requestHeaders, requestBody) {
    this.maps = new Map([[MapType.RequestHeaders, [...requestHeaders]]]);
    this.buffers = new Map([[BufferType.RequestBody, encoder.encode(requestBody)]]);
    /** The local reply the filter sent, if any: `{status, headers, body}`. */
    this.localReply = null;
    /** Streams the filter resumed with `proxy_continue_stream`. */
    this.continued = [];
  }
}

export class ProxyWasmHost {
  /**
   * @param {string} wasmPath the built module
   * @param {object} options `pluginConfiguration` (bytes or text), `properties` (path array
   *   joined by "\0" -> bytes; anything else is not found).
   */
  constructor(wasmPath, { pluginConfiguration, properties = new Map() } = {}) {
    this.module = new WebAssembly.Module(readFileSync(wasmPath));
    this.pluginConfiguration = typeof pluginConfiguration === "string"
      ? encoder.encode(pluginConfiguration) : pluginConfiguration;
    this.properties = properties;
    this.rootContextId = 1;
    this.nextContextId = 2;
    /** The stream whose callback runs (or ran last). */
    this.stream = null;
    /** Maps and buffers of the HTTP call response being delivered to the root context. */
    this.callResponse = null;
    this.shared = new Map(); // key -> {value, cas}
    this.nextCas = 1;
    this.metrics = []; // id -> {type, name, value}
    /** HTTP calls the filter dispatched and the host has not answered yet. */
    this.pendingCalls = [];
    this.nextCallToken = 1;
    this.tickPeriodMs = 0;
    this.doneCalled = false;
    /** What the filter logged: `{level, message}`. */
    this.logs = [];
    /** Host calls made during the current callback, by function name. */
    this.calls = new Map();
    /** Calls the host made into the module's allocator during the current callback. */
    this.allocations = 0;
    /** Wall time spent in this host's functions during the current callback (ns), less the
     * module's allocator they call to return values (that is the module's work). */
    this.hostNs = 0n;
  }

  /** Instantiates the module, runs `_initialize`, creates the root context, starts the VM
   * and configures the plugin; returns whether the configuration was accepted. */
  start() {
    // An empty environment and no preopened directories: the filter touches no files.
    this.wasi = new WASI({ version: "preview1", args: ["acp_filter.wasm"], env: {}, returnOnExit: true });
    const imports = { env: {}, wasi_snapshot_preview1: {} };
    const env = this.envFunctions();
    for (const { module, name, kind } of WebAssembly.Module.imports(this.module)) {
      if (kind !== "function") throw new Error(`unexpected import ${module}.${name} (${kind})`);
      const impl = module === "env" ? env[name]
        : module === "wasi_snapshot_preview1" ? this.wasi.wasiImport[name]?.bind(this.wasi.wasiImport)
          : undefined;
      imports[module][name] = impl ? this.counted(name, impl) : () => {
        throw new Error(`host function ${module}.${name} is not implemented by tests/vmprof/host.mjs`);
      };
    }
    this.instance = new WebAssembly.Instance(this.module, imports);
    this.exports = this.instance.exports;
    this.allocate = this.exports.malloc ?? this.exports.proxy_on_memory_allocate;
    if (!this.exports.proxy_abi_version_0_2_1) throw new Error("module is not proxy-wasm ABI 0.2.1");
    this.wasi.initialize(this.instance); // calls `_initialize`: the SDK's `main!`
    this.callback("proxy_on_context_create", this.rootContextId, 0);
    this.callback("proxy_on_vm_start", this.rootContextId, 0);
    return this.callback("proxy_on_configure", this.rootContextId, this.pluginConfiguration.length).result !== 0;
  }

  /** Calls export `name` with `args`; returns its result, the host calls it made (by name),
   * the allocations the host made in the module for their answers, its wall time in ns, and
   * the part of it spent in this host's functions (`hostNs`): the rest is the module's own. */
  callback(name, ...args) {
    this.calls = new Map();
    this.allocations = 0;
    this.hostNs = 0n;
    const started = process.hrtime.bigint();
    const result = this.exports[name](...args);
    const ns = process.hrtime.bigint() - started;
    return { result, calls: this.calls, allocations: this.allocations, ns, hostNs: this.hostNs };
  }

  /** Wraps host function `fn` so that each call is counted under `name` and timed. */
  counted(name, fn) {
    return (...args) => {
      this.calls.set(name, (this.calls.get(name) ?? 0) + 1);
      const started = process.hrtime.bigint();
      try {
        return fn(...args);
      } finally {
        this.hostNs += process.hrtime.bigint() - started;
      }
    };
  }

  // Memory helpers. The module's memory may grow during any allocation: views are made anew.
  bytes(ptr, len) { return new Uint8Array(this.exports.memory.buffer, ptr, len); }
  text(ptr, len) { return decoder.decode(this.bytes(ptr, len)); }
  copyOut(ptr, len) { return this.bytes(ptr, len).slice(); }
  view() { return new DataView(this.exports.memory.buffer); }
  setU32(ptr, value) { this.view().setUint32(ptr, value, true); }

  /** Copies `bytes` into memory the module allocates (as Envoy does, through its exported
   * allocator) and writes the pointer and size to `ptrPtr` / `sizePtr`. */
  returnBytes(bytes, ptrPtr, sizePtr) {
    if (bytes.length === 0) {
      this.setU32(ptrPtr, 0);
      this.setU32(sizePtr, 0);
      return Status.Ok;
    }
    const allocating = process.hrtime.bigint();
    const ptr = this.allocate(bytes.length);
    this.hostNs -= process.hrtime.bigint() - allocating;
    this.allocations += 1;
    this.bytes(ptr, bytes.length).set(bytes);
    this.setU32(ptrPtr, ptr);
    this.setU32(sizePtr, bytes.length);
    return Status.Ok;
  }

  /** The header map of `type` in the current stream or call response (undefined if none). */
  map(type) {
    const call = type === MapType.CallResponseHeaders || type === MapType.CallResponseTrailers;
    return (call ? this.callResponse : this.stream)?.maps.get(type);
  }

  buffer(type) {
    if (type === BufferType.PluginConfiguration) return this.pluginConfiguration;
    if (type === BufferType.VmConfiguration) return new Uint8Array(0);
    const owner = type === BufferType.CallResponseBody ? this.callResponse : this.stream;
    return owner?.buffers.get(type);
  }

  /** The `env` functions, each behaving as Envoy's. */
  envFunctions() {
    return {
      proxy_log: (level, ptr, len) => {
        this.logs.push({ level: LOG_LEVELS[level] ?? String(level), message: this.text(ptr, len) });
        return Status.Ok;
      },
      // The SDK names the context whose calls follow (before an HTTP call's answer); this host
      // keeps the state of one stream at a time and the root's callouts apart, so it needs none.
      proxy_set_effective_context: () => Status.Ok,
      proxy_get_current_time_nanoseconds: (ptr) => {
        this.view().setBigUint64(ptr, BigInt(Date.now()) * 1_000_000n, true);
        return Status.Ok;
      },
      proxy_set_tick_period_milliseconds: (ms) => {
        this.tickPeriodMs = ms;
        return Status.Ok;
      },
      proxy_get_buffer_bytes: (type, start, maxSize, ptrPtr, sizePtr) => {
        const buffer = this.buffer(type);
        if (!buffer) return Status.NotFound;
        return this.returnBytes(buffer.subarray(start, start + maxSize), ptrPtr, sizePtr);
      },
      // Replaces `size` bytes at `start` with the given ones (Envoy supports replacing from 0,
      // which is all the filter does).
      proxy_set_buffer_bytes: (type, start, size, ptr, len) => {
        const buffer = this.buffer(type);
        if (!buffer || type === BufferType.PluginConfiguration) return Status.NotFound;
        const owner = type === BufferType.CallResponseBody ? this.callResponse : this.stream;
        const next = new Uint8Array(buffer.length - Math.min(size, buffer.length - start) + len);
        next.set(buffer.subarray(0, start));
        next.set(this.bytes(ptr, len), start);
        next.set(buffer.subarray(Math.min(start + size, buffer.length)), start + len);
        owner.buffers.set(type, next);
        return Status.Ok;
      },
      proxy_get_header_map_pairs: (type, ptrPtr, sizePtr) => {
        return this.returnBytes(serializeMap(this.map(type) ?? []), ptrPtr, sizePtr);
      },
      proxy_set_header_map_pairs: (type, ptr, len) => {
        const map = this.map(type);
        if (!map) return Status.NotFound;
        map.splice(0, map.length, ...deserializeMap(this.copyOut(ptr, len)));
        return Status.Ok;
      },
      // Envoy's header names are lowercase; lookups ignore case as its header map does.
      proxy_get_header_map_value: (type, keyPtr, keyLen, ptrPtr, sizePtr) => {
        const key = this.text(keyPtr, keyLen).toLowerCase();
        const found = (this.map(type) ?? []).find(([k]) => k.toLowerCase() === key);
        if (!found) return Status.NotFound;
        return this.returnBytes(encoder.encode(found[1]), ptrPtr, sizePtr);
      },
      proxy_add_header_map_value: (type, keyPtr, keyLen, valuePtr, valueLen) => {
        const map = this.map(type);
        if (!map) return Status.NotFound;
        map.push([this.text(keyPtr, keyLen).toLowerCase(), this.text(valuePtr, valueLen)]);
        return Status.Ok;
      },
      proxy_replace_header_map_value: (type, keyPtr, keyLen, valuePtr, valueLen) => {
        const map = this.map(type);
        if (!map) return Status.NotFound;
        const key = this.text(keyPtr, keyLen).toLowerCase();
        const rest = map.filter(([k]) => k.toLowerCase() !== key);
        map.splice(0, map.length, ...rest, [key, this.text(valuePtr, valueLen)]);
        return Status.Ok;
      },
      proxy_remove_header_map_value: (type, keyPtr, keyLen) => {
        const map = this.map(type);
        if (!map) return Status.NotFound;
        const key = this.text(keyPtr, keyLen).toLowerCase();
        map.splice(0, map.length, ...map.filter(([k]) => k.toLowerCase() !== key));
        return Status.Ok;
      },
      // The path's segments are separated by NUL bytes (`["metadata"]` is just "metadata").
      proxy_get_property: (pathPtr, pathLen, ptrPtr, sizePtr) => {
        const value = this.properties.get(this.text(pathPtr, pathLen));
        if (value === undefined) return Status.NotFound;
        return this.returnBytes(value, ptrPtr, sizePtr);
      },
      proxy_get_shared_data: (keyPtr, keyLen, ptrPtr, sizePtr, casPtr) => {
        const entry = this.shared.get(this.text(keyPtr, keyLen));
        if (!entry) return Status.NotFound;
        this.setU32(casPtr, entry.cas);
        return this.returnBytes(entry.value, ptrPtr, sizePtr);
      },
      // As Envoy: a non-zero `cas` must match the entry's current one; every write gets a new.
      proxy_set_shared_data: (keyPtr, keyLen, valuePtr, valueLen, cas) => {
        const key = this.text(keyPtr, keyLen);
        const entry = this.shared.get(key);
        if (entry && cas !== 0 && cas !== entry.cas) return Status.CasMismatch;
        this.shared.set(key, { value: this.copyOut(valuePtr, valueLen), cas: this.nextCas++ });
        return Status.Ok;
      },
      proxy_define_metric: (type, namePtr, nameLen, idPtr) => {
        const name = this.text(namePtr, nameLen);
        let id = this.metrics.findIndex((m) => m.name === name);
        if (id < 0) id = this.metrics.push({ type, name, value: 0n }) - 1;
        this.setU32(idPtr, id);
        return Status.Ok;
      },
      proxy_increment_metric: (id, offset) => {
        const metric = this.metrics[id];
        if (!metric) return Status.NotFound;
        metric.value += BigInt(offset);
        return Status.Ok;
      },
      proxy_send_local_response: (status, _detailsPtr, _detailsLen, bodyPtr, bodyLen, headersPtr, headersLen, _grpc) => {
        if (!this.stream) return Status.BadArgument;
        this.stream.localReply = {
          status,
          headers: deserializeMap(this.copyOut(headersPtr, headersLen)),
          body: this.text(bodyPtr, bodyLen),
        };
        return Status.Ok;
      },
      proxy_continue_stream: (type) => {
        this.stream?.continued.push(type);
        return Status.Ok;
      },
      proxy_done: () => {
        this.doneCalled = true;
        return Status.Ok;
      },
      proxy_http_call: (upPtr, upLen, hPtr, hLen, bPtr, bLen, _tPtr, _tLen, timeoutMs, tokenPtr) => {
        const token = this.nextCallToken++;
        this.pendingCalls.push({
          token,
          cluster: this.text(upPtr, upLen),
          headers: Object.fromEntries(deserializeMap(this.copyOut(hPtr, hLen))),
          body: this.copyOut(bPtr, bLen),
          timeoutMs,
        });
        this.setU32(tokenPtr, token);
        return Status.Ok;
      },
    };
  }

  /** A value of a metric by name (as Envoy's stats would show it). */
  metric(name) {
    return this.metrics.find((m) => m.name === name)?.value ?? 0n;
  }

  // --- Driving the filter as Envoy does ---

  tick() {
    return this.callback("proxy_on_tick", this.rootContextId);
  }

  /**
   * Answers the oldest pending HTTP call with `answer(call)` -> `{status, body, headers}`,
   * delivered through `proxy_on_http_call_response` to the root context.
   */
  answerCall(answer) {
    const call = this.pendingCalls.shift();
    if (!call) return null;
    const { status, body = "", headers = [] } = answer(call);
    const bytes = encoder.encode(body);
    const responseHeaders = [[":status", String(status)], ...headers];
    this.callResponse = {
      maps: new Map([[MapType.CallResponseHeaders, responseHeaders]]),
      buffers: new Map([[BufferType.CallResponseBody, bytes]]),
    };
    const run = this.callback("proxy_on_http_call_response", this.rootContextId, call.token,
      responseHeaders.length, bytes.length, 0);
    this.callResponse = null;
    return { call, run };
  }

  /**
   * One request through the filter, callback by callback as Envoy calls them: the request is
   * held at its headers for its body; a local reply the filter sends goes back through its
   * response callbacks (as Envoy encodes local replies through the filter chain); otherwise
   * the upstream answers with `upstream(requestBody)` -> `{status, headers, body}`.
   * Returns the stream and each callback's run (result, host calls, time).
   */
  request({ headers, body, upstream }) {
    const id = this.nextContextId++;
    const stream = new StreamState(headers, body);
    this.stream = stream;
    const runs = {};
    runs.context_create = this.callback("proxy_on_context_create", id, this.rootContextId);
    runs.request_headers = this.callback("proxy_on_request_headers", id, headers.length, 0);
    if (!stream.localReply) {
      const size = stream.buffers.get(BufferType.RequestBody).length;
      runs.request_body = this.callback("proxy_on_request_body", id, size, 1);
    }
    let response;
    if (stream.localReply) {
      const { status, headers: extra, body: replyBody } = stream.localReply;
      response = { status, headers: extra, body: replyBody };
    } else {
      const answered = upstream(decoder.decode(stream.buffers.get(BufferType.RequestBody)));
      response = { status: answered.status, headers: answered.headers ?? [], body: answered.body };
    }
    const responseHeaders = [[":status", String(response.status)], ...response.headers];
    stream.maps.set(MapType.ResponseHeaders, responseHeaders);
    stream.buffers.set(BufferType.ResponseBody, encoder.encode(response.body));
    runs.response_headers = this.callback("proxy_on_response_headers", id, responseHeaders.length, 0);
    runs.response_body = this.callback("proxy_on_response_body", id,
      stream.buffers.get(BufferType.ResponseBody).length, 1);
    runs.log = this.callback("proxy_on_log", id);
    runs.done = this.callback("proxy_on_done", id);
    runs.delete = this.callback("proxy_on_delete", id);
    this.stream = null;
    return { stream, runs };
  }
}
