#!/bin/sh
# Real-mixture dev pieces: presence thresholds chosen through the timeline on one set of pieces
# (seed 7, 160 pieces), scored on another (the default seed, 120 pieces), with the pieces whose
# detected set changes with leading silence and hop. Both sets are built from the dev split only.
set -e
PY=.venv/bin/python
OUT=training/reports/devmix
G=runs/pruned7/artifact/family-pruned/1.2.0   # pruned run G + timbre embedding (training/reports/pruned/g)
D=instrunet_core/models/family/2.1.0
$PY -m training.devmix build --corpus data/corpus --out data/devmix
$PY -m training.devmix build --corpus data/corpus --out data/devmix-choose --n 160 --seed 7
$PY -m training.devmix thresholds $D --pieces data/devmix-choose --out $OUT/2.1.0-thresholds.json
$PY -m training.devmix thresholds $G --pieces data/devmix-choose --out $OUT/g-thresholds.json
$PY -m training.devmix score $D --pieces data/devmix --variants --out $OUT/2.1.0.json
$PY -m training.devmix score $D --pieces data/devmix --variants --thresholds $OUT/2.1.0-thresholds.json --out $OUT/2.1.0-mixture-thresholds.json
$PY -m training.devmix score $G --pieces data/devmix --variants --out $OUT/g.json
$PY -m training.devmix score $G --pieces data/devmix --variants --thresholds $OUT/g-thresholds.json --out $OUT/g-mixture-thresholds.json
