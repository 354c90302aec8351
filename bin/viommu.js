#!/usr/bin/env node
'use strict';
// The CLI is compiled to dist/: the published package ships it (built at `prepack`);
// in a clone of the repository `npm install` builds it (the `prepare` script).
let cli;
try {
  cli = require('../dist/cli/main.js');
} catch (e) {
  if (e && e.code === 'MODULE_NOT_FOUND' && String(e.message).includes('dist/cli/main.js')) {
    process.stderr.write('viommu: dist/ is missing; in a clone of the repository run `npm install` (or `npm run build`) first\n');
    process.exit(2);
  }
  throw e;
}
cli.main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`viommu: ${err && err.stack ? err.stack : String(err)}\n`); process.exitCode = 2; },
);
