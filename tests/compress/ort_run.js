// ort_run.js: runs an ONNX model through onnxruntime (the npm package onnxruntime-node, test-time
// only; scripts/test installs it under build-test/npm) for test_onnx_torch.py's cross-checks.
//
//   node ort_run.js MODEL.onnx IN.f32 N C H W OUT.f32
//
// IN.f32 holds N float32 samples of shape C x H x W; OUT.f32 gets the first output's floats.
const fs = require('fs');
const ort = require('onnxruntime-node');

(async () => {
  const [model, inPath, n, c, h, w, outPath] = process.argv.slice(2);
  const dims = [Number(n), Number(c), Number(h), Number(w)];
  const buf = fs.readFileSync(inPath);
  const x = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  const session = await ort.InferenceSession.create(model);
  const feeds = {};
  feeds[session.inputNames[0]] = new ort.Tensor('float32', x, dims);
  const out = await session.run(feeds);
  const y = out[session.outputNames[0]].data;
  fs.writeFileSync(outPath, Buffer.from(y.buffer, y.byteOffset, y.length * 4));
})().catch((e) => {
  console.error('ort_run: ' + e.message);
  process.exit(1);
});
