#!/usr/bin/env bash
# test_demo_dp.sh: `condenser demo --dp-epsilon E` (a small run: 6,000 training images, 3 rounds,
# no fleet). Checks that every site trained with DP-SGD (require_dp in its INI), that the epsilon
# the demo prints for each site is at most E and is the one the site's own audit log gives when
# `condenser audit privacy` recomputes it offline (no entry out of line), that the smallest
# site (the one the noise was solved for) spends close to E, and that the JSON has the fields.
set -euo pipefail
bin=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" demo --workdir "$work/d" --train-subset 6000 --public 1000 --teacher-epochs 1 --rounds 3 \
  --devices 0 --dp-epsilon 2.5 --json --quiet > "$work/out.json"
/usr/bin/python3 - "$bin" "$work" <<'PY'
import json, subprocess, sys
bin_, work = sys.argv[1], sys.argv[2]
d = json.load(open(f"{work}/out.json"))
dp = d["dp"]
assert dp["target_epsilon"] == 2.5 and dp["delta"] == 1e-5, dp
eps = dp["site_epsilon"]
assert len(eps) == 3, eps
for name, e in zip(("site-a", "site-b", "site-c"), eps):
    r = json.loads(subprocess.run([bin_, "audit", "privacy", f"{work}/d/{name}/agent.db", "--json"],
                                  capture_output=True, text=True, check=True).stdout)
    assert r["bad"] == 0, r
    assert len(r["spends"]) == 3, r  # one spend per round: every site trained with DP-SGD
    last = r["spends"][-1]["epsilon"]
    assert abs(last - e) <= 1e-9 * max(1.0, e), (name, last, e)
    assert 0 < e <= 2.5, (name, e)
    ini = open(f"{work}/d/{name}/agent.ini").read()
    assert "require_dp = true" in ini and "max_epsilon_job" in ini, ini
assert max(eps) > 2.4, eps  # the smallest site spends (nearly) the target
assert 0 < d["federated_float_accuracy"] <= 1
print("test_demo_dp: ok", eps, d["federated_float_accuracy"], d["federated_int8_accuracy"])
PY
