// Runs an ONNX graph from vit_onnx.py with onnxruntime-node (CPU execution provider).
//   node ort_run.js time MODEL.onnx BATCH IMG THREADS LABEL [ROUNDS]
//       one JSON line: images/s, best of ROUNDS (default 3) rounds of >= 1 s each after
//       3 warm-up runs
//   node ort_run.js logits MODEL.onnx BATCH IMG INPUTS.f32 OUT.f32
//       the logits of the normalized float images in INPUTS.f32 (exactly BATCH of them)
// THREADS is ONNX Runtime's intra-op thread count (inter-op: 1, sequential execution), the
// counterpart of `repq bench --threads`. The input is already a normalized float image:
// normalizing pixels is not timed here, while `repq bench` starts from u8 pixels (a pass over
// 150 KB per image, small beside the network).
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

const seconds = () => Number(process.hrtime.bigint()) / 1e9;

async function open(file, threads) {
  return ort.InferenceSession.create(file, {
    executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1,
    executionMode: 'sequential', graphOptimizationLevel: 'all',
  });
}

async function time(file, batch, img, threads, label, rounds) {
  const session = await open(file, threads);
  const n = batch * 3 * img * img;
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = Math.sin(0.37 * i); // speed does not depend on the values
  const feeds = {x: new ort.Tensor('float32', data, [batch, 3, img, img])};
  for (let w = 0; w < 3; w++) await session.run(feeds);
  let best = 0;
  for (let round = 0; round < rounds; round++) {
    let runs = 0;
    const t0 = seconds();
    let elapsed;
    do {
      await session.run(feeds);
      runs++;
      elapsed = seconds() - t0;
    } while (elapsed < 1.0 || runs < 2);
    best = Math.max(best, runs * batch / elapsed);
  }
  const version = require('onnxruntime-node/package.json').version;
  console.log(JSON.stringify({runtime: 'onnxruntime', model: label, batch, threads,
    precision: /int8\.onnx$/.test(file) ? 'int8' : 'fp32', images_per_s: +best.toFixed(3), ort_version: version,
    amx: process.env.LIBREPQ_ORT_NO_AMX === '1' ? 'refused' : 'allowed'}));
}

async function logits(file, batch, img, inputs, out) {
  const session = await open(file, 1);
  const buf = fs.readFileSync(inputs);
  const n = batch * 3 * img * img;
  if (buf.length !== 4 * n) throw new Error(`${inputs}: ${buf.length} bytes, expected ${4 * n}`);
  const x = new Float32Array(buf.buffer, buf.byteOffset, n);
  const y = (await session.run({x: new ort.Tensor('float32', x, [batch, 3, img, img])})).y.data;
  fs.writeFileSync(out, Buffer.from(y.buffer, y.byteOffset, y.byteLength));
}

(async () => {
  const [cmd, file, b, s, a4, a5, a6] = process.argv.slice(2);
  const batch = parseInt(b, 10), img = parseInt(s, 10);
  if (cmd === 'time') await time(file, batch, img, parseInt(a4, 10), a5 || file, parseInt(a6 || '3', 10));
  else if (cmd === 'logits') await logits(file, batch, img, a4, a5);
  else throw new Error('usage: ort_run.js time|logits MODEL.onnx BATCH IMG ...');
})().catch((e) => { console.error(`ort_run.js: ${e.message || e}`); process.exit(1); });
