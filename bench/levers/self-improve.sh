#!/usr/bin/env bash
# The self-improvement lever (the verifier in the loop): sample a trained model on hard training puzzles,
# keep the answers the verifier accepts, and continue training on them beside a control that continues on
# canonical answers alone: bash bench/levers/self-improve.sh [THREADS]. The model is the mini-1600steps
# lever's (trained first when missing); everything goes to runs/levers/self-improve.
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${1:-1}
base=runs/levers/mini-1600steps/model
out=runs/levers/self-improve
cli="node bin/puzzle-llama.js"
[[ -f $base/config.json ]] || bash bench/levers/run.sh mini-1600steps "$threads"
mkdir -p "$out"
# 1. fresh training puzzles (a seed no lever trains on), and those no short canonical solution answers
[[ -f $out/fresh.jsonl ]] || $cli synth --count 12000 --seed 777 --n 5,6,7 --max-value 60 --out "$out/fresh.jsonl"
node dist/bench/levers/hard-puzzles.js "$out/fresh.jsonl" "$out/hard.jsonl" 4000
# 2. eight samples of each at temperature 1; the first verified answer of each puzzle is kept
[[ -f $out/samples/records.jsonl ]] || $cli eval --model "$base" --sets "$out/hard.jsonl" --samples 8 --temperature 1 --mode free --threads "$threads" --out "$out/samples"
node dist/bench/levers/harvest.js "$out/samples/records.jsonl" "$out/harvest.jsonl"
# 3. 800 more steps on fresh canonical answers (pairs and triples), alone or with the harvest mixed in three times
[[ -f $out/canon.jsonl ]] || $cli synth --count 25600 --seed 4321 --n 5,6,7 --max-value 60 --responses canonical-only --out "$out/canon.jsonl"
cat "$out/canon.jsonl" "$out/harvest.jsonl" "$out/harvest.jsonl" "$out/harvest.jsonl" | awk 'BEGIN { srand(5) } { print rand() "\t" $0 }' | sort -k1,1 | cut -f2- > "$out/mixed.jsonl.tmp"
mv "$out/mixed.jsonl.tmp" "$out/mixed.jsonl"
echo "{\"baseModel\": \"$base\", \"lora\": null, \"batchSize\": 32, \"lr\": 0.001, \"warmupSteps\": 20, \"lengthBuckets\": 8, \"steps\": 800, \"device\": \"cpu\"}" > "$out/continue.json"
for arm in canon mixed; do
  [[ -f $out/$arm/model/config.json ]] || $cli train --config "$out/continue.json" --data "$out/$arm.jsonl" --threads "$threads" --out "$out/$arm"
  $cli eval --model "$out/$arm/model" --sets id,ood-form --limit 300 --threads "$threads" --out "$out/$arm/eval"
done
