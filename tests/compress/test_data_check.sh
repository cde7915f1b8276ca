#!/usr/bin/env bash
# test_data_check.sh: `condenser data check` as a site runs it before joining a job: counts per
# class, shape, value range, missing values, duplicates (and duplicates labelled otherwise),
# the mapping onto a model's class map (text and --json, which agree), exit status 0 when the
# data fits and an error naming the problem when a label is unknown or the shape does not fit;
# and a CSV table fed to a 1x2x2 model through shape=/the model's shape, NA imputed from the
# means the model stores; --input-shape as shape= for train, distill, eval and data check; import
# --labels; and the check
# against a federated job's shape and class map (--job ID --dir COORD), which changes nothing.
set -euo pipefail
bin=${1:?usage: test_data_check.sh CONDENSER}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# 4 features; classes cat, dog, fish; row 5 repeats row 1, row 6 repeats row 2 with another
# label; one NA.
cat > "$d/a.csv" <<'CSV'
f1;f2;f3;f4;kind
1;2;3;4;cat
5;6;7;8;dog
9;NA;11;12;fish
0;0;0;200;dog
1;2;3;4;cat
5;6;7;8;cat
CSV
"$bin" data check "csv:$d/a.csv,label=kind" > "$d/o.txt" 2>&1 && fail "NA accepted under na=refuse"
grep -q 'a.csv:4:2: missing value' "$d/o.txt" || fail "NA message: $(cat "$d/o.txt")"
"$bin" data check "csv:$d/a.csv,label=kind,na=mean" > "$d/o.txt"
grep -q '6 samples of 4x1x1, 3 classes' "$d/o.txt" || fail "summary: $(cat "$d/o.txt")"
grep -q 'min 0  max 200 .* missing 1' "$d/o.txt" || fail "values: $(cat "$d/o.txt")"
grep -q 'duplicates: 2 records equal to an earlier one, 1 of them labelled otherwise' "$d/o.txt" ||
  fail "duplicates: $(cat "$d/o.txt")"

# A model of classes bird,cat,dog,fish (CSV class names sorted) over 1x2x2 inputs (train on a table that has them all).
cat > "$d/m.csv" <<'CSV'
a,b,c,d,label
1,2,3,4,cat
5,6,7,8,dog
9,10,11,12,fish
0,0,0,200,bird
2,2,3,4,cat
CSV
"$bin" train --data "csv:$d/m.csv,shape=1x2x2" --arch "flatten dense(4)" --epochs 1 --threads 1 \
  --out "$d/m.cnd" > /dev/null
"$bin" info "$d/m.cnd" | grep -q 'labels *bird,cat,dog,fish' || fail "class map not stored"
"$bin" data check "csv:$d/a.csv,label=kind,na=mean" --model "$d/m.cnd" > "$d/o.txt"
grep -q "fits (flat records take it)" "$d/o.txt" || fail "shape: $(cat "$d/o.txt")"
grep -Eq "^ +2 +fish +1 +3$" "$d/o.txt" || fail "fish -> 3: $(cat "$d/o.txt")"
grep -q "no sample of the model's class 0 ('bird')" "$d/o.txt" || fail "fish warning"
"$bin" data check "csv:$d/a.csv,label=kind,na=mean" --model "$d/m.cnd" --json > "$d/o.json"
python3 - "$d/o.json" <<'PY' || fail "json: $(cat "$d/o.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["samples"] == 6 and r["shape"] == [4, 1, 1] and r["values"]["missing"] == 1, r
assert r["duplicates"] == 2 and r["duplicates_labelled_otherwise"] == 1, r
m = {c["name"]: (c["samples"], c["model_class"]) for c in r["classes"]}
assert m == {"fish": (1, 3), "cat": (3, 1), "dog": (2, 2)}, m
assert r["model"]["shape_fits"] and r["model"]["classes_without_samples"] == [0], r
PY
# an unknown label: reported, then refused
printf 'f1,f2,f3,f4,kind\n1,2,3,4,wolf\n1,2,3,5,cat\n' > "$d/u.csv"
"$bin" data check "csv:$d/u.csv,label=kind" --model "$d/m.cnd" > "$d/o.txt" 2>&1 &&
  fail "unknown label accepted"
grep -q "NOT IN THE MODEL" "$d/o.txt" && grep -q "1 of the data's classes are not classes of" \
  "$d/o.txt" || fail "unknown label: $(cat "$d/o.txt")"
# a shape that does not fit
printf 'f1,f2,f3,label\n1,2,3,cat\n' > "$d/s.csv"
"$bin" data check "csv:$d/s.csv" --model "$d/m.cnd" > "$d/o.txt" 2>&1 && fail "shape accepted"
grep -q "do not fit" "$d/o.txt" || fail "shape: $(cat "$d/o.txt")"
# eval fills missing values with the model's stored means only if it has them
"$bin" eval "$d/m.cnd" --data "csv:$d/a.csv,label=kind,na=mean" > "$d/o.txt" 2>&1 &&
  fail "eval imputed without stored means"
grep -q "the model stores no training means" "$d/o.txt" || fail "eval NA: $(cat "$d/o.txt")"
"$bin" train --data "csv:$d/a.csv,label=kind,na=mean" --arch "dense(3)" --epochs 1 --threads 1 \
  --out "$d/na.cnd" > /dev/null
"$bin" info "$d/na.cnd" | grep -q 'na_mean *3.5,3.20000005,5.16666651,39.3333321' || fail "na_mean: $("$bin" info "$d/na.cnd")"
"$bin" eval "$d/na.cnd" --data "csv:$d/a.csv,label=kind,na=mean" | grep -q '(6 samples)' ||
  fail "eval with the stored means"

# --input-shape C,H,W: the spec's shape= by another name, for train, eval and data check
"$bin" train --data "csv:$d/m.csv" --input-shape 1,2,2 --arch "conv2d(2,1) relu flatten dense(4)" \
  --epochs 1 --threads 1 --out "$d/c.cnd" > /dev/null
"$bin" info "$d/c.cnd" | grep -q 'input *1x2x2' || fail "--input-shape train: $("$bin" info "$d/c.cnd")"
"$bin" eval "$d/c.cnd" --data "csv:$d/m.csv" --input-shape 1,2,2 | grep -q '(5 samples)' ||
  fail "--input-shape eval"
"$bin" distill --teacher "$d/c.cnd" --data "csv:$d/m.csv" --input-shape 1,2,2 --arch "flatten dense(4)" \
  --epochs 1 --threads 1 --no-checkpoint --out "$d/s.cnd" > /dev/null || fail "--input-shape distill"
"$bin" info "$d/s.cnd" | grep -q 'input *1x2x2' || fail "--input-shape distill: $("$bin" info "$d/s.cnd")"
"$bin" data check "csv:$d/m.csv" --input-shape 1,2,2 | grep -q '5 samples of 1x2x2' ||
  fail "--input-shape data check"
"$bin" data check "csv:$d/m.csv,shape=1x2x2" --input-shape 1x2x2 > /dev/null || fail "same shape twice"
"$bin" data check "csv:$d/m.csv,shape=1x2x2" --input-shape 2,1,2 > "$d/o.txt" 2>&1 &&
  fail "conflicting shapes accepted"
grep -q "disagree" "$d/o.txt" || fail "conflicting shapes: $(cat "$d/o.txt")"
"$bin" data check "idx:$d/x,$d/y" --input-shape 1,2,2 > "$d/o.txt" 2>&1 && fail "idx reshaped"
grep -q "applies to csv: and folder: data" "$d/o.txt" || fail "idx: $(cat "$d/o.txt")"
"$bin" data check "csv:$d/m.csv" --input-shape 1,2 > "$d/o.txt" 2>&1 && fail "bad shape accepted"
grep -q "expected C,H,W" "$d/o.txt" || fail "bad shape: $(cat "$d/o.txt")"

# an imported ONNX model takes its class map from --labels, so data check maps names onto it
"$bin" export "$d/c.cnd" --onnx --out "$d/c.onnx" > /dev/null
"$bin" import "$d/c.onnx" --out "$d/ci.cnd" --labels bird,cat,dog,fish > /dev/null
"$bin" data check "csv:$d/m.csv" --input-shape 1,2,2 --model "$d/ci.cnd" > /dev/null ||
  fail "imported model's class map"
"$bin" import "$d/c.onnx" --out "$d/cj.cnd" --labels bird,cat > "$d/o.txt" 2>&1 && fail "2 labels for 4"
grep -q -- "--labels" "$d/o.txt" || fail "import --labels: $(cat "$d/o.txt")"
[ ! -e "$d/cj.cnd" ] || fail "import wrote a model with a wrong class map"

# --job ID --dir COORD: the same mapping against a federated job's shape and class map, read
# from the coordinator's database without changing it
"$bin" ca init --dir "$d/ca" --name "test federation" > /dev/null
"$bin" coordinator init --dir "$d/coord" --ca "$d/ca" > /dev/null
"$bin" job create --dir "$d/coord" --student-arch "flatten dense(4)" --teacher-local vendor \
  --input 1,2,2 --classes 4 --labels bird,cat,dog,fish > /dev/null
sum_before=$(sha256sum "$d/coord/coordinator.db" | cut -d' ' -f1)
"$bin" data check "csv:$d/a.csv,label=kind,na=mean" --job 1 --dir "$d/coord" > "$d/o.txt"
grep -q "job 1 of $d/coord: input 1x2x2 fits (flat records take it); 4 classes (bird,cat,dog,fish)" \
  "$d/o.txt" || fail "job: $(cat "$d/o.txt")"
grep -Eq "^ +2 +fish +1 +3$" "$d/o.txt" || fail "job fish -> 3: $(cat "$d/o.txt")"
grep -q "no sample of the job's class 0 ('bird')" "$d/o.txt" || fail "job bird warning"
"$bin" data check "csv:$d/a.csv,label=kind,na=mean" --job 1 --dir "$d/coord" --json > "$d/o.json"
python3 - "$d/o.json" <<'PY' || fail "job json: $(cat "$d/o.json")"
import json, sys
r = json.load(open(sys.argv[1]))
m = {c["name"]: (c["samples"], c["job_class"]) for c in r["classes"]}
assert m == {"fish": (1, 3), "cat": (3, 1), "dog": (2, 2)}, m
j = r["job"]
assert j["input"] == [1, 2, 2] and j["shape_fits"] and j["classes_without_samples"] == [0], j
assert j["labels"] == "bird,cat,dog,fish", j
PY
"$bin" data check "csv:$d/u.csv,label=kind" --job 1 --dir "$d/coord" > "$d/o.txt" 2>&1 &&
  fail "job: unknown label accepted"
grep -q "NOT IN THE JOB" "$d/o.txt" || fail "job unknown label: $(cat "$d/o.txt")"
"$bin" data check "csv:$d/s.csv" --job 1 --dir "$d/coord" > "$d/o.txt" 2>&1 && fail "job shape accepted"
grep -q "do not fit the job 1" "$d/o.txt" || fail "job shape: $(cat "$d/o.txt")"
"$bin" data check "csv:$d/a.csv,label=kind,na=mean" --job 7 --dir "$d/coord" > "$d/o.txt" 2>&1 &&
  fail "missing job accepted"
grep -q "7" "$d/o.txt" || fail "missing job: $(cat "$d/o.txt")"
"$bin" data check "csv:$d/a.csv,label=kind,na=mean" --job 1 --model "$d/m.cnd" > "$d/o.txt" 2>&1 &&
  fail "--job with --model accepted"
[ "$(sha256sum "$d/coord/coordinator.db" | cut -d' ' -f1)" = "$sum_before" ] ||
  fail "data check --job changed the coordinator's database"
echo "test_data_check: ok"
