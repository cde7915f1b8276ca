#!/usr/bin/env bash
# cli_bench.sh: `condenser bench secagg` and `condenser bench proto` as a user runs them, on small
# inputs: the text report has every line, the JSON parses and its counts agree with the
# options (clients, dropouts, survivors, frames), and bad options fail with exit code 2 and a
# message naming the option. Timings are never asserted.
set -euo pipefail
bin=${CND_BIN:?CND_BIN must point at the condenser binary}
command -v python3 > /dev/null || exit 77
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$bin" bench secagg --clients 20 --values 1000 --dropout 0.2 --threads 2 --samples 3 > "$d/sa.txt"
for l in 'secure aggregation: 20 clients x 1000 values, 4 dropped after sharing (20%)' \
  'mask generator' 'client encode' 'client share keys .* (median of 3)' 'client masking' \
  'client unmask' 'server add masked .* (all 16 vectors, streaming)' 'server unmask .*2 threads' \
  'server total' 'wire: masked vector' 'sum check           exact (16 survivors)'; do
  grep -q -- "$l" "$d/sa.txt" || fail "bench secagg text lacks '$l': $(cat "$d/sa.txt")"
done
"$bin" bench secagg --clients 12 --values 500 --dropout 0.25 --threads 1 --json > "$d/sa.json"
python3 - "$d/sa.json" <<'PY' || fail "bench secagg json: $(cat "$d/sa.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["clients"] == 12 and r["values"] == 500 and r["dropped"] == 3 and r["threads"] == 1, r
assert r["sum_ok"] is True and r["min_survivors"] <= 9 and r["degree"] >= 2, r
assert r["masked_bytes"] >= r["packed_plaintext_bytes"] > 0 and r["wire_ratio"] >= 1, r
assert set(r["prg_gbps"]) == {"aes256ctr_openssl", "chacha20_openssl", "chacha20_sodium"}, r
for k in ("client_encode_s", "client_share_keys_s", "client_mask_s", "client_unmask_s",
          "server_add_masked_s", "server_unmask_s", "server_total_s"):
    assert isinstance(r[k], float) and r[k] >= 0, k
PY
# --regions: the two-level simulation (docs/hierarchical-aggregation.md), its combined sum exact.
"$bin" bench secagg --clients 24 --regions 3 --values 800 --dropout 0.25 --samples 2 --json \
  > "$d/rg.json" 2> /dev/null
python3 - "$d/rg.json" <<'PY' || fail "bench secagg --regions json: $(cat "$d/rg.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["clients"] == 24 and r["regions"] == 3 and r["region_clients"] == 8, r
assert r["sum_ok"] is True and r["values"] == 800, r
# 3 regional sums of 800 values at the region's ring width, plus min_survivors signatures each.
assert r["coordinator_bytes_in"] > 3 * 800 * r["region_ring_bits"] // 8, r
assert abs(r["adverts_relayed_flat_mb"] - 213 * 24 * 24 / 1e6) < 1e-3, r
assert r["adverts_relayed_per_aggregator_mb"] < r["adverts_relayed_flat_mb"], r
PY
"$bin" bench secagg --clients 24 --regions 2 --values 800 --samples 2 > "$d/rg.txt" 2> /dev/null
for l in 'two-level secure aggregation: 24 clients in 2 regions of 12, 800 values' \
  'slowest regional aggregator' 'coordinator combine .* (adding 2 regional sums)' \
  'coordinator bytes in' 'adverts relayed' 'sum check  *exact'; do
  grep -q -- "$l" "$d/rg.txt" || fail "bench secagg --regions text lacks '$l': $(cat "$d/rg.txt")"
done

"$bin" bench proto --values 20000 --bits 12 --chunk 4096 --reps 2 --rtt 20 > "$d/p.txt" 2> /dev/null
for l in 'masked vector: 20000 values x 12 bits = 30000 bytes in a 30026-byte MASKED message, 9 frames (4096-byte chunks), medians of 2 runs' \
  'encode (plan+chunks+validate+pack)' 'decode (unpack+validate+reassemble)' \
  'floor: one SHA-256 pass' 'floor: memcpy' 'bytes: payload 30000, encoded frames' \
  'bytes per value on the wire: 1\.5' 'session setup' 'round trip of a heartbeat (20 runs)' \
  'CURVE (tcp loopback)' 'plain ZeroMQ (tcp loopback)'; do
  grep -q -- "$l" "$d/p.txt" || fail "bench proto text lacks '$l': $(cat "$d/p.txt")"
done
"$bin" bench proto --values 20000 --bits 12 --chunk 4096 --reps 2 --rtt 20 --json > "$d/p.json" 2> /dev/null
python3 - "$d/p.json" <<'PY' || fail "bench proto json: $(cat "$d/p.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["values"] == 20000 and r["bits"] == 12 and r["payload_bytes"] == 30000, r
assert r["frames"] == 1 + (30026 + 4095) // 4096 and r["chunk_size"] == 4096, r
assert r["encoded_bytes"] > r["payload_bytes"] and r["wire_bytes"] >= r["payload_bytes"], r
assert r["rtt_n"] == 20 and len(r["rtt_curve_us"]) == 3 and len(r["rtt_plain_us"]) == 3, r
assert r["flower_bytes_per_value"] == 8, r
PY

set +e
"$bin" bench secagg --clients 10 --dropout 0.9 > /dev/null 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q -- '--dropout 0.90 leaves 1 clients, fewer than' "$d/err" ||
  fail "secagg dropout: rc $rc $(cat "$d/err")"
"$bin" bench secagg --clients 2 > /dev/null 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q -- '--clients' "$d/err" || fail "secagg clients: rc $rc $(cat "$d/err")"
"$bin" bench secagg --clients 40 --regions 3 > /dev/null 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q -- '--regions 3: --clients 40 must split' "$d/err" ||
  fail "secagg regions: rc $rc $(cat "$d/err")"
"$bin" bench proto --values 1000 --bits 64 --rtt 10 > /dev/null 2> "$d/err"; rc=$?
[ $rc -eq 1 ] && grep -q -- 'bit_width: 64 outside 1..32' "$d/err" || fail "proto bits: rc $rc $(cat "$d/err")"
"$bin" bench proto --chunk 10 > /dev/null 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q -- '--chunk' "$d/err" || fail "proto chunk: rc $rc $(cat "$d/err")"
set -e
echo "cli_bench: ok"
