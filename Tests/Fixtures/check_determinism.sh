#!/usr/bin/env bash
# Regenerate every fixture into a scratch directory and compare it byte for byte with the committed files.
# Usage: Tests/Fixtures/check_determinism.sh [/path/to/venv/bin/python] [groups...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${1:-/work/venv/bin/python}"
shift || true
groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=(tokenizer rng schedulers models reference pipeline)
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
HF_HUB_OFFLINE=1 FIXTURES_OUT="$scratch" "$py" "$here/make_fixtures.py" "${groups[@]}" > "$scratch.log" 2>&1 \
  || { tail -20 "$scratch.log"; exit 1; }
rm -f "$scratch.log"
status=0
while IFS= read -r f; do
  rel="${f#"$scratch"/}"
  if ! cmp -s "$f" "$here/$rel"; then echo "DIFFERS: $rel"; status=1; fi
done < <(find "$scratch" -type f | sort)
n=$(find "$scratch" -type f | wc -l)
[ $status -eq 0 ] && echo "identical: $n files regenerated for groups ${groups[*]}"
exit $status
