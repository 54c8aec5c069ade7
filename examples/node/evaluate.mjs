#!/usr/bin/env node
// Evaluate a loss on .npy files through the binary Open Inference Protocol; gradients and
// elementwise values are written as .npy files, the rest printed as JSON.
//
//   node examples/node/evaluate.mjs http://127.0.0.1:8000 --loss cross_entropy \
//       --param label_smoothing=0.1 --param 'weight=[1,2,0.5]' --grad input --out out \
//       input=logits.npy target=labels.npy
//   {"loss":"cross_entropy","reduction":"mean","value":1.09,"grad":{"input":"out/grad_input.npy"},...}
//
// The URL comes first or as --url (default $LOSS_SERVICE_URL or http://127.0.0.1:8000); --api-key (default
// $LOSS_SERVICE_API_KEY), --loss NAME, --reduction R, --param NAME=VALUE (a number, true/false, a
// JSON list, or a string), --grad ROLE (repeatable), --elementwise, --out DIR (default ".").
// An error answer prints "STATUS: message" on stderr and exits 1.

import fs from "node:fs";
import path from "node:path";
import { LossClient, LossServiceError } from "./client.mjs";
import { BY_DATATYPE, readNpy, writeNpy } from "./npy.mjs";

function parseArgs(argv) {
  const args = { url: process.env.LOSS_SERVICE_URL ?? "http://127.0.0.1:8000", apiKey: process.env.LOSS_SERVICE_API_KEY,
    params: {}, grads: [], files: {}, out: ".", elementwise: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (i === 0 && /^https?:\/\//.test(a)) {
      args.url = a; // the service's URL may come first, as for the other examples
      continue;
    }
    const next = () => argv[++i];
    if (a === "--url") args.url = next();
    else if (a === "--api-key") args.apiKey = next();
    else if (a === "--loss") args.loss = next();
    else if (a === "--reduction") args.reduction = next();
    else if (a === "--grad") args.grads.push(next());
    else if (a === "--elementwise") args.elementwise = true;
    else if (a === "--out") args.out = next();
    else if (a === "--param") {
      const [name, ...rest] = next().split("=");
      args.params[name] = paramValue(rest.join("="));
    } else if (a.includes("=")) {
      const [role, ...rest] = a.split("=");
      args.files[role] = rest.join("=");
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!args.loss) throw new Error("--loss is required");
  return args;
}

// The protocol's parameters are numbers, booleans and strings: a list goes as its JSON text.
function paramValue(text) {
  if (text === "true" || text === "false") return text === "true";
  if (text.trim() !== "" && !Number.isNaN(Number(text))) return Number(text);
  return text;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const inputs = {};
  for (const [role, file] of Object.entries(args.files)) {
    const { data, shape, datatype } = readNpy(fs.readFileSync(file));
    inputs[role] = { data, shape, datatype };
  }
  const parameters = { ...args.params };
  if (args.reduction) parameters.reduction = args.reduction;
  const wanted = ["value", ...(args.elementwise || args.reduction === "none" ? ["elementwise"] : []),
    ...args.grads.map((r) => `grad_${r}`)];
  const client = new LossClient(args.url, { apiKey: args.apiKey });
  const result = await client.infer(args.loss, inputs, { outputs: wanted, parameters });
  fs.mkdirSync(args.out, { recursive: true });
  const save = (name) => {
    const out = result.outputs[name];
    const file = path.join(args.out, `${name}.npy`);
    const half = out.datatype === "BF16" || out.datatype === "FP16"; // widened to float32 by the client
    fs.writeFileSync(file, writeNpy(out.data, out.shape, half ? "<f4" : BY_DATATYPE[out.datatype]));
    return file;
  };
  const value = result.outputs.value;
  const answer = {
    loss: result.parameters.loss,
    reduction: result.parameters.reduction,
    value: value === undefined ? null : Number(value.data[0]),
    elementwise: result.outputs.elementwise ? save("elementwise") : null,
    grad: Object.fromEntries(args.grads.map((r) => [r, save(`grad_${r}`)])),
    meta: result.parameters,
  };
  process.stdout.write(JSON.stringify(answer) + "\n");
}

main().catch((error) => {
  process.stderr.write((error instanceof LossServiceError ? error.message : `error: ${error.message}`) + "\n");
  process.exit(1);
});
