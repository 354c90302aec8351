/**
 * An ESM consumer (nodenext) without jest: every scenario of the conformance
 * kit through runScenario, against the VT-d model of the installed package.
 * Exit status 1 when any scenario fails or none ran.
 */
import { ConformanceFailure, conformanceScenarios, runScenario } from 'viommu/conformance';
import { replayTrace } from 'viommu/trace';
import { vtdAdapter } from './vtd-adapter.js';

let passed = 0;
let failed = 0;
for (const aw of [39, 48] as const) {
  for (const scenario of conformanceScenarios) {
    const label = `intel-vtd aw${aw}: ${scenario.name} (${scenario.rules.join(', ')})`;
    try {
      const outcome = await runScenario(scenario, vtdAdapter(aw), { numRuns: 5 });
      if (outcome.status === 'passed') {
        passed++;
        console.log(`  ok    ${label}`);
      } else {
        // Every method of this adapter and fast-check are present: nothing may be skipped.
        failed++;
        console.log(`  FAIL  ${label}: skipped (${outcome.reason})`);
      }
    } catch (e) {
      failed++;
      console.log(`  FAIL  ${label}: ${ConformanceFailure.is(e) ? e.message : String(e)}`);
    }
  }
}

// viommu/trace from ESM: a named import of the CommonJS build.
const header = '{"trace":"viommu","version":1,"model":"none","ram":[]}';
const add = '{"op":"notifier.add","id":"v","sid":"0x1","flags":["MAP","UNMAP"],"start":"0x0","end":"0xffffffff"}';
const r = await replayTrace(Buffer.from(`${header}\n${add}\n`));
if (!r.ok) {
  failed++;
  console.log('  FAIL  viommu/trace: a clean two-line trace did not replay clean');
}

console.log(`esm consumer: ${passed} scenarios passed, ${failed} failed`);
process.exitCode = failed === 0 && passed > 0 ? 0 : 1;
