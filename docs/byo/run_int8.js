// Runs student_int8.onnx in onnxruntime on the rows of records.csv (784 raw pixels and a label
// named "<index>-<name>") and prints the accuracy.
const fs = require('fs');
const ort = require('onnxruntime-node');
(async () => {
  const rows = fs.readFileSync('records.csv', 'utf8').trim().split('\n').slice(1);
  const x = new Uint8Array(rows.length * 784), y = [];
  rows.forEach((r, i) => {
    const v = r.split(',');
    for (let k = 0; k < 784; k++) x[i * 784 + k] = Number(v[k]);
    y.push(parseInt(v[784]));
  });
  const s = await ort.InferenceSession.create('student_int8.onnx');
  const out = await s.run({input: new ort.Tensor('uint8', x, [rows.length, 1, 28, 28])});
  const z = out.logits.data;
  let ok = 0;
  for (let i = 0; i < rows.length; i++) {
    let best = 0;
    for (let k = 1; k < 10; k++) if (z[i * 10 + k] > z[i * 10 + best]) best = k;
    ok += best === y[i];
  }
  console.log(`onnxruntime: accuracy ${(ok / rows.length).toFixed(4)} on ${rows.length} records`);
})();
