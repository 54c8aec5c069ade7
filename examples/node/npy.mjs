// Reading and writing .npy files (format versions 1-3, little-endian, C order), no dependencies.
//
//   const { dtype, shape, data } = readNpy(fs.readFileSync("logits.npy"));   // data: a typed array
//   fs.writeFileSync("grad.npy", writeNpy(data, shape, "<f4"));

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY

// .npy type -> the typed array that holds it and the Open Inference Protocol's datatype.
// float16 has no typed array in Node 20: its raw 16-bit patterns are kept in a Uint16Array.
export const DTYPES = {
  "<f2": { array: Uint16Array, datatype: "FP16" },
  "<f4": { array: Float32Array, datatype: "FP32" },
  "<f8": { array: Float64Array, datatype: "FP64" },
  "|i1": { array: Int8Array, datatype: "INT8" },
  "<i2": { array: Int16Array, datatype: "INT16" },
  "<i4": { array: Int32Array, datatype: "INT32" },
  "<i8": { array: BigInt64Array, datatype: "INT64" },
  "|u1": { array: Uint8Array, datatype: "UINT8" },
  "|b1": { array: Uint8Array, datatype: "BOOL" },
};

export const BY_DATATYPE = Object.fromEntries(Object.entries(DTYPES).map(([descr, t]) => [t.datatype, descr]));

export function readNpy(buffer) {
  if (buffer.length < 10 || !buffer.subarray(0, 6).equals(MAGIC)) throw new Error("not an .npy file");
  const major = buffer[6];
  const [size, start] = major === 1 ? [buffer.readUInt16LE(8), 10] : [buffer.readUInt32LE(8), 12];
  const header = buffer.subarray(start, start + size).toString("latin1");
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) throw new Error("malformed .npy header");
  const type = DTYPES[descr.replace("=", "<")];
  if (type === undefined) throw new Error(`unsupported .npy dtype ${descr} (little-endian numbers and bool only)`);
  if (fortran === "True") throw new Error("Fortran-ordered .npy files are not supported: save a C-ordered array");
  const shape = shapeText.split(",").map((s) => s.trim()).filter((s) => s !== "").map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const offset = start + size;
  const bytes = buffer.subarray(offset, offset + count * type.array.BYTES_PER_ELEMENT);
  const data = new type.array(count);
  new Uint8Array(data.buffer).set(bytes); // a copy: aligned, whatever the file's buffer
  return { dtype: descr.replace("=", "<"), datatype: type.datatype, shape, data };
}

export function writeNpy(data, shape, dtype) {
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(", ");
  let header = `{'descr': '${dtype}', 'fortran_order': False, 'shape': (${dims}), }`;
  const unpadded = 10 + header.length + 1;
  header += " ".repeat((64 - (unpadded % 64)) % 64) + "\n";
  const head = Buffer.alloc(10);
  MAGIC.copy(head);
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.concat([head, Buffer.from(header, "latin1"), body]);
}
