#!/bin/sh
# The bundled ensemble's parts alone and in pairs (python -m training.examples --stems), each analysed by
# the shipped models (and by runs D1 and D3-D6, exported to /tmp as in training/reports/default/d3/openhead/commands.txt):
# the overall answer and the families reported. Session of 2026-12-05.
set -e
.venv/bin/python -m training.examples --out /tmp/stems --stems > /dev/null
for m in family family-compact /tmp/d1art/family-d1/0.1.0 /tmp/d3art/family-d3/0.1.0 /tmp/d4art/family-d4/0.1.0 /tmp/d5art/family-d5/0.1.0 /tmp/d6art/family-d6/0.1.0; do
    for f in /tmp/stems/ensemble_*.flac /tmp/stems/ensemble.flac; do
        echo "== $m $(basename "$f") (score: $(.venv/bin/python -c "import json,sys; t=json.load(open('/tmp/stems/ground_truth.json'))[sys.argv[1]]; print(', '.join(sorted(t)))" "$(basename "$f")"))"
        .venv/bin/instrunet analyze "$f" --model "$m" 2>&1 | sed -n '2p;/^detected/,/^condition/p' | grep -v '^detected\|^condition'
    done
done
