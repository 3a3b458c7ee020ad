#!/usr/bin/env bash
# The main job on a fresh machine: set up, then simulate the IVORY regimen
# (1.5 MIU s.c. daily x5, then weekly x7) on the default model for one year, hourly output,
# print a summary of the key outputs and write out/ivory.csv (every output and state) and
# out/ivory.png. Extra arguments go to `il2pkpd simulate`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
exec .venv/bin/il2pkpd simulate --model ivory \
  --regimen "1.5 MIU sc qd x5 then 1.5 MIU sc qw x7" --horizon 8760 --step 1 --time-unit h \
  --outputs conc,treg_fold,treg_pct_cd4,cd25_fold,nk_fold,tbr,tbr_change,surv_mi \
  --out out/ivory.csv --plot out/ivory.png "$@"
