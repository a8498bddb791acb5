#!/usr/bin/env bash
# Trains one lever of the README's results table from its config and evaluates it on 300 puzzles of id and
# ood-form: bash bench/levers/run.sh NAME [THREADS]  (NAME.json here; the run goes to runs/levers/NAME). A lever with
# a NAME.synth file trains on a fixed file that those synth flags make (epochs over it instead of fresh puzzles).
set -euo pipefail
cd "$(dirname "$0")/../.."
name=${1:?usage: bash bench/levers/run.sh NAME [THREADS] (one of: $(cd bench/levers && ls *.json | sed 's/\.json$//' | tr '\n' ' '))}
threads=${2:-1}
config=bench/levers/$name.json
[[ -f $config ]] || { echo "no lever named '$name' (no $config)" >&2; exit 2; }
out=runs/levers/$name
data=()
if [[ -f bench/levers/$name.synth ]]; then
  # a lever on fixed data: NAME.synth holds the synth flags of its training file (made once, then reused)
  mkdir -p runs/levers
  [[ -f $out.train.jsonl ]] || node bin/puzzle-llama.js synth $(cat "bench/levers/$name.synth") --out "$out.train.jsonl"
  data=(--data "$out.train.jsonl")
fi
node bin/puzzle-llama.js train --config "$config" "${data[@]}" --threads "$threads" --out "$out"
node bin/puzzle-llama.js eval --model "$out/model" --sets id,ood-form --limit 300 --threads "$threads" --out "$out/eval"
