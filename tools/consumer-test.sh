#!/usr/bin/env bash
# The packaging check (issue 12): pack viommu as it would be published, then
# in temporary projects:
#   bare: `npm install <tarball>` alone: no npm warning, the installed size
#         (target: under 3 MB), require/import of every entry point, the bin;
#   cjs:  test/package/cjs (CommonJS, jest + ts-jest): strict type-check with
#         skipLibCheck: false, then the conformance kit under jest;
#   esm:  test/package/esm (ESM, nodenext, no jest): strict type-check, then
#         the conformance kit through runScenario.
# The dev tools the consumers need are installed at the versions of this
# repository's node_modules, from the npm cache (--prefer-offline).
# Exit status 0 when every step passed; the last line says which failed.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/viommu-consumer-XXXXXX")"
keep="${KEEP_CONSUMERS:-}"
cleanup() { if [ -z "$keep" ]; then rm -rf "$work"; else echo "consumer-test: kept $work"; fi; }
trap cleanup EXIT

failures=()
step() { echo; echo "== consumer-test: $*"; }
fail() { echo "consumer-test: FAILED: $*" >&2; failures+=("$*"); }
version() { node -p "require('$repo/node_modules/$1/package.json').version"; }
npm_install() { npm install --prefer-offline --no-audit --no-fund "$@" 2>&1; }

step "npm pack"
if ! tarball_name="$(cd "$repo" && npm pack --silent --pack-destination "$work" | tail -n 1)"; then
  fail "npm pack"; echo "consumer-test: 1+ step failed: ${failures[*]}"; exit 1
fi
tarball="$work/$tarball_name"
echo "$tarball"
# What the package must (not) contain.
contents="$(tar -tzf "$tarball")"
for f in package/LICENSE package/docs/contract.md package/docs/trace-format.md package/dist/index.js package/dist/index.d.ts package/bin/viommu.js; do
  grep -qx "$f" <<<"$contents" || fail "the tarball lacks $f"
done
if grep -q '\.map$' <<<"$contents"; then fail "the tarball ships source maps (they point at src/, which is not shipped)"; fi
if tar -xzOf "$tarball" package/package.json | node -e '
  const p = JSON.parse(require("fs").readFileSync(0, "utf8"));
  const hooks = ["preinstall", "install", "postinstall", "prepare"].filter((s) => p.scripts && p.scripts[s]);
  if (hooks.length) { console.error("install-time scripts in the packed package.json: " + hooks.join(", ")); process.exit(1); }
'; then :; else fail "the packed package.json has install-time scripts"; fi

# --- bare consumer -----------------------------------------------------------
step "bare consumer: npm install <tarball>"
bare="$work/bare"
mkdir -p "$bare" && (cd "$bare" && npm init -y >/dev/null)
if out="$(cd "$bare" && npm_install "$tarball")"; then
  echo "$out"
  if grep -qi 'warn' <<<"$out"; then fail "npm warned while installing the tarball"; fi
else
  echo "$out"; fail "bare install"
fi
if [ -d "$bare/node_modules" ]; then
  kb="$(du -sk "$bare/node_modules" | cut -f1)"
  apparent_kb="$(du -sk --apparent-size "$bare/node_modules" | cut -f1)"
  echo "installed size: ${kb} KiB on disk (du -sk), ${apparent_kb} KiB of file data (du -sk --apparent-size)"
  echo "packages: $(cd "$bare" && node -e 'console.log(Object.keys(require("./package-lock.json").packages).filter(Boolean).map((k) => k.replace(/^node_modules\//, "")).join(" "))')"
  # The target is on the files the install adds (apparent size), so that it does not depend on the filesystem's block size.
  [ "$apparent_kb" -lt 3072 ] || fail "the install adds ${apparent_kb} KiB, over the 3 MB target"
  for p in fast-check pure-rand rxjs typed-emitter jest; do
    [ ! -e "$bare/node_modules/$p" ] || fail "installing viommu pulled in $p"
  done
  (cd "$bare" && node -e '
    for (const e of ["viommu", "viommu/trace", "viommu/listeners", "viommu/conformance", "viommu/v86"]) require(e);
    import("viommu").then((m) => { if (typeof m.createIntelVtd !== "function") throw new Error("ESM import: no createIntelVtd"); });
  ') || fail "require/import of the entry points"
  # The bin, on a fixture of the repository.
  (cd "$bare" && npx --no-install viommu replay "$repo/fixtures/qemu-vtd/sl-4k-rw-basic.jsonl") || fail "npx viommu replay from the installed package"
fi

# --- the two projects --------------------------------------------------------
# The VT-d conformance adapter of this repository's own tests, importing the package.
copy_adapter() { # dir ext
  for f in vtd-adapter.ts vtd-guest.ts; do
    sed -E -e "s#'\\.\\./\\.\\./src/conformance'#'viommu/conformance'#" \
           -e "s#'\\.\\./\\.\\./src/[^']*'#'viommu'#" \
           -e "s#from '\\./vtd-guest'#from './vtd-guest$2'#" \
      "$repo/test/conformance/$f" >"$1/$f"
    if grep -q "'\\.\\./" "$1/$f"; then fail "$f still imports a repository path"; fi
  done
}

tools="typescript@$(version typescript) @types/node@$(version @types/node) fast-check@$(version fast-check)"

step "cjs consumer (CommonJS, jest + ts-jest)"
cjs="$work/cjs"
cp -r "$repo/test/package/cjs" "$cjs"
copy_adapter "$cjs" ""
# shellcheck disable=SC2086
if (cd "$cjs" && npm_install --save-dev "$tarball" $tools "jest@$(version jest)" "ts-jest@$(version ts-jest)" "@types/jest@$(version @types/jest)" | tail -n 3); then
  (cd "$cjs" && npx --no-install tsc --noEmit -p tsconfig.json) || fail "cjs: type-check"
  # TypeScript 5's default resolution for CommonJS (node10) knows no "exports": the subpaths resolve through typesVersions.
  (cd "$cjs" && npx --no-install tsc --noEmit -p tsconfig.json --moduleResolution node10 --ignoreDeprecations 6.0) || fail "cjs: type-check with moduleResolution node10"
  (cd "$cjs" && npx --no-install jest --ci 2>&1) || fail "cjs: jest"
else
  fail "cjs: install"
fi

step "esm consumer (ESM, nodenext, no jest)"
esm="$work/esm"
cp -r "$repo/test/package/esm" "$esm"
copy_adapter "$esm" ".js"
# shellcheck disable=SC2086
if (cd "$esm" && npm_install --save-dev "$tarball" $tools | tail -n 3); then
  [ ! -e "$esm/node_modules/jest" ] || fail "esm: jest was installed (it is an optional peer)"
  if (cd "$esm" && npx --no-install tsc -p tsconfig.json); then
    (cd "$esm" && node build/run-conformance.js) || fail "esm: conformance run"
  else
    fail "esm: type-check"
  fi
else
  fail "esm: install"
fi

echo
if [ "${#failures[@]}" -eq 0 ]; then
  echo "consumer-test: OK (bare install, cjs with jest, esm with nodenext)"
else
  echo "consumer-test: ${#failures[@]} failed: ${failures[*]}"
  exit 1
fi
