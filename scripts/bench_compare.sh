#!/usr/bin/env bash
# Runs ringtrain's benchmarks and the reference scripts side by side, in one
# run, alternating, and prints each figure and the ratio ringtrain / reference.
#
#   scripts/bench_compare.sh            # everything
#   ROUNDS=3 WORKERS="2 4" SIZES=4,16,64 scripts/bench_compare.sh
#   ONLY="tls" ROUNDS=3 WORKERS=2 SIZES=1,16,64 scripts/bench_compare.sh   # TLS cost only
#
# Each round also runs the ring with mutual TLS (--tls, as the product's),
# right after the same command in plaintext, and prints the cost of TLS:
# all-reduce bus bandwidth and float32 training samples/s with and without.
#
# Needs: bin/ringtrain (make build), /usr/bin/python3 with Debian's torch
# (apt-get install -y python3-torch libopenblas0-pthread iperf3).
#
# Threads: torch_ddp_mlp.py sizes Debian torch's OpenBLAS pool with its
# --threads and keeps torch's intra-op threads at 1, its best setup, so the
# reference runs without extra environment; REF_OPENBLAS_THREADS=N forces
# OPENBLAS_NUM_THREADS=N on it.
#
# "machine" compares each side's best configuration on the whole machine:
# every (workers × threads) split of the cores, ringtrain exact and float32.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/ringtrain}
PY=${PY:-/usr/bin/python3}
BENCH=${BENCH:-../shared/bench}
ROUNDS=${ROUNDS:-2}
WORKERS=${WORKERS:-"2 4"}
SIZES=${SIZES:-1,4,16,64}
STEPS=${STEPS:-100}
ONLY=${ONLY:-"train machine allreduce tls"}
REF_OPENBLAS_THREADS=${REF_OPENBLAS_THREADS-}
ref_env=()
[[ -n $REF_OPENBLAS_THREADS ]] && ref_env=(env OPENBLAS_NUM_THREADS="$REF_OPENBLAS_THREADS")

[[ -x $BIN ]] || { echo "bench_compare: $BIN not built; run make build" >&2; exit 2; }
[[ " $ONLY " != *" train "* && " $ONLY " != *" allreduce "* ]] || $PY -c 'import torch' 2>/dev/null || { echo "bench_compare: $PY has no torch; apt-get install -y python3-torch libopenblas0-pthread" >&2; exit 2; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs);" \
  "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} reference OPENBLAS_NUM_THREADS=${REF_OPENBLAS_THREADS:-unset}"

run() { # label file cmd...
  local f=$1; shift
  "$@" | tee -a "$out/$f"
}

for r in $(seq "$ROUNDS"); do
  if [[ " $ONLY " == *" train "* ]]; then
    run ours-train-1 "$BIN" bench train --workers 1 --layers 784-512-512-10 --global-batch 256 --steps "$STEPS" --threads 1
    run float-train-1 "$BIN" bench train --exact=false --workers 1 --layers 784-512-512-10 --global-batch 256 --steps "$STEPS" --threads 1
    run ref-train-1 "${ref_env[@]}" $PY "$BENCH/torch_ddp_mlp.py" --workers 1 --layers 784-512-512-10 --global-batch 256 --steps "$STEPS" --threads 1
    for w in $WORKERS; do
      run ours-train-$w "$BIN" bench train --workers "$w" --layers 784-512-512-10 --global-batch 256 --steps "$STEPS" --threads 1
      run float-train-$w "$BIN" bench train --exact=false --workers "$w" --layers 784-512-512-10 --global-batch 256 --steps "$STEPS" --threads 1
      run ref-train-$w "${ref_env[@]}" $PY "$BENCH/torch_ddp_mlp.py" --workers "$w" --layers 784-512-512-10 --global-batch 256 --steps "$STEPS" --threads 1
    done
  fi
  if [[ " $ONLY " == *" machine "* ]]; then
    cores=$(nproc)
    for w in 1 2 4 8 16; do
      (( w <= cores && cores % w == 0 )) || continue
      t=$((cores / w))
      run machine-ours-$w-$t "$BIN" bench train --workers "$w" --layers 784-512-512-10 --global-batch 256 --steps "$STEPS" --threads "$t"
      run machine-float-$w-$t "$BIN" bench train --exact=false --workers "$w" --layers 784-512-512-10 --global-batch 256 --steps "$STEPS" --threads "$t"
      run machine-ref-$w-$t "${ref_env[@]}" $PY "$BENCH/torch_ddp_mlp.py" --workers "$w" --layers 784-512-512-10 --global-batch 256 --steps "$STEPS" --threads "$t"
    done
  fi
  if [[ " $ONLY " == *" allreduce "* ]]; then
    for w in $WORKERS; do
      run ours-ar-$w "$BIN" bench allreduce --workers "$w" --sizes-mib "$SIZES"
      run ref-ar-$w $PY "$BENCH/torch_allreduce.py" --workers "$w" --sizes-mib "$SIZES"
      run wire-ar-$w "$BIN" bench wire --workers "$w" --sizes-mib "$SIZES"
    done
    if command -v iperf3 >/dev/null; then
      run tcp bash "$BENCH/iperf_loopback.sh"
    fi
  fi
  if [[ " $ONLY " == *" tls "* ]]; then
    for w in $WORKERS; do
      run plain-ar-$w "$BIN" bench allreduce --workers "$w" --sizes-mib "$SIZES"
      run tls-ar-$w "$BIN" bench allreduce --tls --workers "$w" --sizes-mib "$SIZES"
      run plain-train-$w "$BIN" bench train --exact=false --workers "$w" --layers 784-512-512-10 --global-batch 256 --steps "$STEPS" --threads 1
      run tls-train-$w "$BIN" bench train --tls --exact=false --workers "$w" --layers 784-512-512-10 --global-batch 256 --steps "$STEPS" --threads 1
    done
  fi
done

# Ratios of medians over the rounds.
$PY - "$out" <<'PY'
import json, os, statistics, sys
d = sys.argv[1]
def load(name):
    p = os.path.join(d, name)
    if not os.path.exists(p):
        return []
    return [json.loads(l) for l in open(p) if l.strip().startswith("{")]
print("\n# ratios (median over rounds)")
for name in sorted(os.listdir(d)):
    if not name.startswith("ours-train-"):
        continue
    w = name.rsplit("-", 1)[1]
    ours = statistics.median(r["samples_per_sec"] for r in load(name))
    ref = statistics.median(r["samples_per_sec"] for r in load("ref-train-" + w))
    row = {"compare": "train", "workers": int(w), "ringtrain_samples_per_sec": ours,
           "pytorch_samples_per_sec": ref, "ratio": round(ours / ref, 2)}
    flt = load("float-train-" + w)
    if flt:  # ringtrain's default is exact; the float32 step beside it
        f = statistics.median(r["samples_per_sec"] for r in flt)
        row["ringtrain_float_samples_per_sec"] = f
        row["exact_vs_float"] = round(ours / f, 2)
    print(json.dumps(row))
# The whole machine: each side's best split of the cores into workers × threads.
best = {}
for name in sorted(os.listdir(d)):
    if name.startswith("machine-"):
        _, side, w, t = name.split("-")
        v = statistics.median(r["samples_per_sec"] for r in load(name))
        if v > best.get(side, (0,))[0]:
            best[side] = (v, int(w), int(t))
if "ref" in best:
    row = {"compare": "whole-machine", "pytorch_best_samples_per_sec": best["ref"][0], "pytorch_workers_threads": best["ref"][1:]}
    for side, label in (("ours", "ringtrain_exact"), ("float", "ringtrain_float")):
        if side in best:
            row[label + "_best_samples_per_sec"] = best[side][0]
            row[label + "_workers_threads"] = best[side][1:]
            row[label + "_vs_pytorch"] = round(best[side][0] / best["ref"][0], 2)
    print(json.dumps(row))
tcp = [r["GBps"] for r in load("tcp")]
tcpbest = max(tcp) if tcp else None
for name in sorted(os.listdir(d)):
    if not name.startswith("ours-ar-"):
        continue
    w = name.rsplit("-", 1)[1]
    ours, ref, wire = {}, {}, {}
    for r in load(name):
        ours.setdefault(r["mib"], []).append(r["busbw_GBps"])
    for r in load("ref-ar-" + w):
        ref.setdefault(r["mib"], []).append(r["busbw_GBps"])
    for r in load("wire-ar-" + w):
        wire.setdefault(r["mib"], []).append(r["busbw_GBps"])
    for mib in sorted(ours):
        o = statistics.median(ours[mib])
        g = statistics.median(ref.get(mib, [float("nan")]))
        row = {"compare": "allreduce", "workers": int(w), "mib": mib, "ringtrain_busbw_GBps": o,
               "gloo_busbw_GBps": g, "ratio_vs_gloo": round(o / g, 2) if g == g and g > 0 else None}
        if mib in wire:
            # The wire ceiling: the same ring moving the same bytes over bare
            # TCP. 1.5x gloo above it cannot be reached by any TCP ring here.
            c = statistics.median(wire[mib])
            row["wire_busbw_GBps"] = c
            row["fraction_of_wire"] = round(o / c, 2)
            row["gloo_fraction_of_wire"] = round(g / c, 2) if g == g else None
        if tcpbest:
            row["tcp_GBps"] = tcpbest
            row["fraction_of_tcp"] = round(o / tcpbest, 2)
        print(json.dumps(row))
# The cost of TLS: each TLS round ran right after the same plaintext one.
for name in sorted(os.listdir(d)):
    if name.startswith("tls-ar-"):
        w = name.rsplit("-", 1)[1]
        plain, tls = {}, {}
        for r in load("plain-ar-" + w):
            plain.setdefault(r["mib"], []).append(r["busbw_GBps"])
        for r in load(name):
            tls.setdefault(r["mib"], []).append(r["busbw_GBps"])
        for mib in sorted(tls):
            p, t = statistics.median(plain.get(mib, [float("nan")])), statistics.median(tls[mib])
            print(json.dumps({"compare": "tls-allreduce", "workers": int(w), "mib": mib, "rounds": len(tls[mib]),
                              "plain_busbw_GBps": p, "tls_busbw_GBps": t, "tls_vs_plain": round(t / p, 2) if p == p and p > 0 else None}))
    if name.startswith("tls-train-"):
        w = name.rsplit("-", 1)[1]
        p = statistics.median(r["samples_per_sec"] for r in load("plain-train-" + w))
        t = [r["samples_per_sec"] for r in load(name)]
        print(json.dumps({"compare": "tls-train-float", "workers": int(w), "rounds": len(t),
                          "plain_samples_per_sec": p, "tls_samples_per_sec": statistics.median(t),
                          "tls_vs_plain": round(statistics.median(t) / p, 2)}))
PY
