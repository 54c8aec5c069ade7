// A client of loss-service's Open Inference Protocol (v2) endpoint, with the binary tensor data
// extension both ways. Node 20+, built-in fetch, no dependencies.
//
//   const client = new LossClient("http://127.0.0.1:8000", { apiKey: process.env.LOSS_SERVICE_API_KEY });
//   const result = await client.infer("cross_entropy",
//     { input: { data: logits, shape: [8, 5], datatype: "FP32" },
//       target: { data: labels, shape: [8], datatype: "INT64" } },   // labels: a BigInt64Array
//     { outputs: ["value", "grad_input"], parameters: { label_smoothing: 0.1, weight: "[1, 2, 0.5, 1, 1]" } });
//   result.outputs.value.data[0]; result.outputs.grad_input.data;    // typed arrays
//
// FP16 and BF16 outputs come back as Float32Array (exactly: float32 holds every such value).

const ARRAYS = {
  FP16: Uint16Array, // raw 16-bit patterns (Node 20 has no Float16Array)
  BF16: Uint16Array, // raw 16-bit patterns
  FP32: Float32Array,
  FP64: Float64Array,
  INT8: Int8Array,
  INT16: Int16Array,
  INT32: Int32Array,
  INT64: BigInt64Array,
  UINT8: Uint8Array,
  BOOL: Uint8Array,
};

export class LossServiceError extends Error {
  constructor(status, message) {
    super(`${status}: ${message}`);
    this.status = status;
    this.detail = message; // the service's message: its detail, then one "loc: msg" line per error
  }
}

export class LossClient {
  constructor(url, { apiKey } = {}) {
    this.url = url.replace(/\/+$/, "");
    this.headers = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
  }

  async get(path) {
    const response = await fetch(this.url + path, { headers: this.headers });
    if (!response.ok) throw await failure(response);
    return response.json();
  }

  model(name) {
    return this.get(`/v2/models/${encodeURIComponent(name)}`);
  }

  // inputs: { role: { data: TypedArray, shape, datatype } }; outputs: names (default: the
  // service's: value, and elementwise for reduction none); parameters: reduction and the loss's
  // params (a list param as a JSON string). Every tensor travels as raw bytes, both ways.
  async infer(model, inputs, { outputs, parameters } = {}) {
    const entries = Object.entries(inputs);
    const request = {
      inputs: entries.map(([name, t]) => ({
        name,
        shape: t.shape,
        datatype: t.datatype,
        parameters: { binary_data_size: t.data.byteLength },
      })),
      parameters: { ...(parameters ?? {}), binary_data_output: true },
    };
    if (outputs) request.outputs = outputs.map((name) => ({ name, parameters: { binary_data: true } }));
    const json = Buffer.from(JSON.stringify(request));
    const body = Buffer.concat([json, ...entries.map(([, t]) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))]);
    const response = await fetch(`${this.url}/v2/models/${encodeURIComponent(model)}/infer`, {
      method: "POST",
      headers: { ...this.headers, "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": String(json.length) },
      body,
    });
    if (!response.ok) throw await failure(response);
    return parse(Buffer.from(await response.arrayBuffer()), response.headers.get("inference-header-content-length"));
  }
}

async function failure(response) {
  const text = await response.text();
  try {
    return new LossServiceError(response.status, JSON.parse(text).error);
  } catch {
    return new LossServiceError(response.status, text);
  }
}

// The answer: its JSON, then each binary output's bytes in order.
function parse(buffer, headerLength) {
  const length = headerLength === null ? buffer.length : Number(headerLength);
  const head = JSON.parse(buffer.subarray(0, length).toString("utf8"));
  const outputs = {};
  let at = length;
  for (const out of head.outputs) {
    const size = out.parameters?.binary_data_size;
    let data;
    if (size === undefined) {
      data = ARRAYS[out.datatype] === BigInt64Array ? BigInt64Array.from(out.data.map(BigInt)) : ARRAYS[out.datatype].from(out.data);
    } else {
      data = new ARRAYS[out.datatype](size / ARRAYS[out.datatype].BYTES_PER_ELEMENT);
      new Uint8Array(data.buffer).set(buffer.subarray(at, at + size)); // a copy: aligned
      at += size;
    }
    if (out.datatype === "BF16" || out.datatype === "FP16") data = widen(data, out.datatype, size !== undefined);
    outputs[out.name] = { datatype: out.datatype, shape: out.shape, data };
  }
  return { model: head.model_name, parameters: head.parameters, outputs };
}

// Half-precision outputs as float32: from their raw bits, or from JSON numbers (already values).
function widen(data, datatype, raw) {
  if (!raw) return Float32Array.from(data);
  if (datatype === "BF16") return new Float32Array(Uint32Array.from(data, (bits) => bits << 16).buffer);
  return Float32Array.from(data, halfToFloat);
}

function halfToFloat(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}
