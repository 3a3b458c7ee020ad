#!/usr/bin/env bash
# The main job on a fresh machine: set up, then
#  1. simulate the IVORY regimen (1.5 MIU sc daily x5, then weekly x7) on the default model for
#     one year, hourly output, typical values; print a summary of the key outputs and write
#     out/ivory.csv (every output and state). Extra arguments go to `il2pkpd simulate`.
#  2. draw out/ivory.png (scripts/main_figure.py): the IVORY regimen against placebo over 100
#     draws of the calibrated posterior fits/ivory-published (median and 90% band), every output
#     of step 1, weeks on a time axis that expands the dosing phase. A model prediction, not
#     trial data; about 30 s on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
.venv/bin/il2pkpd simulate --model ivory \
  --regimen "1.5 MIU sc qd x5 then 1.5 MIU sc qw x7" --horizon 8760 --step 1 --time-unit h \
  --outputs conc,treg_fold,treg_pct_cd4,cd25_fold,nk_fold,tbr,tbr_change,surv_mi \
  --out out/ivory.csv "$@"
.venv/bin/python scripts/main_figure.py --out out/ivory.png --draws 100
