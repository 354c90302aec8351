#!/bin/sh
# Capture every input in $1 into $2 and replay each capture through the model.
# Usage: tools/qemu-capture/capture-all.sh INDIR OUTDIR   (run `npm run build` first)
in=$1; out=$2; mkdir -p "$out"
for f in "$in"/*.jsonl; do
  t=$(basename "$f")
  if python3 "$(dirname "$0")/capture.py" "$f" "$out/$t" --source "$(basename "$t" .jsonl)" 2>"$out/$t.err"; then
    node "$(dirname "$0")/../../bin/viommu.js" replay "$out/$t" >"$out/$t.replay" 2>&1; echo "$t: replay exit $?"
  else
    echo "$t: CAPTURE FAILED: $(tail -c 400 "$out/$t.err")"
  fi
done
