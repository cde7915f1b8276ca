// ort_run_q.js: runs an int8 ONNX export (condenser export MODEL.cndq --onnx) through onnxruntime
// (npm onnxruntime-node, test-time only) for test_onnx_int8.py and scripts/bench_onnx_int8.py.
//
//   node ort_run_q.js MODEL.onnx IN.u8 N C H W OUT.bin [THREADS [REPEATS]]
//   node ort_run_q.js MODEL.onnx IN.i64 N C OUT.bin
//
// IN.u8 holds N raw uint8 samples of shape C x H x W (NCHW) (an IN.i64 file: int64 values, for
// test_onnx_int8.py's requantization subgraph); OUT.bin gets the first output's bytes (int8 or
// float32), and stdout its type. With REPEATS, the batch is run that many more
// times and stdout also gets the median milliseconds per run.
const fs = require('fs');
const ort = require('onnxruntime-node');

(async () => {
  const args = process.argv.slice(2);
  if (args[1].endsWith('.i64')) args.splice(4, 0, '1', '1');
  const [model, inPath, n, c, h, w, outPath, threads, repeats] = args;
  const wide = inPath.endsWith('.i64');
  const dims = wide ? [Number(n), Number(c)] : [Number(n), Number(c), Number(h), Number(w)];
  const buf = fs.readFileSync(inPath);
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
  const x = wide ? new BigInt64Array(ab) : new Uint8Array(ab);
  const opts = threads ? {intraOpNumThreads: Number(threads), interOpNumThreads: 1} : {};
  const session = await ort.InferenceSession.create(model, opts);
  const feeds = {};
  feeds[session.inputNames[0]] = new ort.Tensor(wide ? 'int64' : 'uint8', x, dims);
  const out = await session.run(feeds);
  const y = out[session.outputNames[0]];
  fs.writeFileSync(outPath, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
  let line = y.type;
  if (repeats) {
    const ms = [];
    for (let r = 0; r < Number(repeats); r++) {
      const t0 = process.hrtime.bigint();
      await session.run(feeds);
      ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    ms.sort((a, b) => a - b);
    line += ' ' + ms[Math.floor(ms.length / 2)].toFixed(4);
  }
  console.log(line);
})().catch((e) => {
  console.error('ort_run_q: ' + e.message);
  process.exit(1);
});
