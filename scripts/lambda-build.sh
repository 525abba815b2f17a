#!/usr/bin/env bash
# Builds every function as an arm64 Lambda package (`bootstrap`) with cargo-lambda (from PyPI,
# which brings zig for cross-compiling) and prints each package's size. `sam build` runs the
# same build per function through `BuildMethod: rust-cargolambda`.
#
#   bash scripts/lambda-build.sh              # all functions
#   bash scripts/lambda-build.sh get-post     # some
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/forum-lambda-target}"
# Debian's python refuses pip outside a venv (PEP 668): cargo-lambda lives in its own.
if ! command -v cargo-lambda >/dev/null 2>&1; then
  venv="$HOME/.cache/forum-ci/cargo-lambda"
  [ -x "$venv/bin/cargo-lambda" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q cargo-lambda; }
  export PATH="$venv/bin:$PATH"
fi

if [ "$#" -gt 0 ]; then
  bins=("$@")
else
  mapfile -t bins < <(ls functions/src/bin | sed 's/\.rs$//')
fi
args=()
for b in "${bins[@]}"; do args+=(--bin "$b"); done
cargo lambda build --release --arm64 "${args[@]}"

printf '%-16s %10s %10s\n' function bootstrap zipped
for b in "${bins[@]}"; do
  f="$CARGO_TARGET_DIR/lambda/$b/bootstrap"
  [ -f "$f" ] || { echo "missing $f" >&2; exit 1; }
  zipped=$(python3 -c 'import io,sys,zipfile; b=io.BytesIO(); z=zipfile.ZipFile(b,"w",zipfile.ZIP_DEFLATED); z.write(sys.argv[1],"bootstrap"); z.close(); print(len(b.getvalue()))' "$f")
  printf '%-16s %10s %10s\n' "$b" "$(stat -c %s "$f")" "$zipped"
done
