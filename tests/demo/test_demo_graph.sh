#!/usr/bin/env bash
# test_demo_graph.sh: a federated job with a graph student (issue 16): a depthwise-separable CNN
# with a residual add, no batchnorm (QAT rounds need none), through the whole main job: SecAgg+
# rounds at three sites, a QAT round, the coordinator's int8 freeze into a graph artifact (format
# version 2), its signed manifest, the rollout to simulated devices running it, and the audit.
# A small run (4,000 training images, 2 rounds): the accuracy only has to beat chance.
set -euo pipefail
bin=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
student="stem=conv2d(16,3,stride=2,pad=1) relu6 dwconv(3,pad=1) relu6 conv2d(16,1) add(@stem) \
conv2d(32,1) relu6 dwconv(3,stride=2,pad=1) relu6 conv2d(32,1) gap dense(10)"
"$bin" demo --workdir "$work/d" --student "$student" --train-subset 4000 --public 1000 \
  --teacher-epochs 1 --rounds 2 --qat-rounds 1 --devices 10 --json --quiet > "$work/out.json"
# the artifact is an int8 graph artifact: format version 2 (docs/quantization.md)
head -c 8 "$work/d/student-int8.cndq" | od -An -tu2 | awk '{exit !($3 == 2)}' ||
  { echo "test_demo_graph: the artifact is not format version 2" >&2; exit 1; }
/usr/bin/python3 - "$work/out.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["manifest_verified"] is True, d
assert d["audit_logs_verified"] is True and d["audit"]["logs_verified"] == 4, d["audit"]
assert all(s["reconciled"] for s in d["sites"]), d["sites"]
f = d["fleet"]
assert f["state"] == "completed" and f["running_v2"] == 10 and f["running_v1"] == 0, f
# ten classes: chance is 0.10; the integer runtime on the devices gives the demo's int8 figure
assert d["federated_int8_accuracy"] > 0.15, d["federated_int8_accuracy"]
assert abs(d["federated_int8_accuracy"] - d["federated_float_accuracy"]) < 0.05, d
print("test_demo_graph: ok", d["federated_float_accuracy"], d["federated_int8_accuracy"])
PY
