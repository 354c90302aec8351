/**
 * The project's VT-d model runs the conformance kit (viommu/conformance):
 * 3-level (aw 39) and 4-level (aw 48) tables, and without caching mode
 * (UNMAP notifiers only: the kit skips replay and teardown, with the reason).
 */
import { describeIommuConformance } from '../../src/conformance';
import { vtdAdapter } from './vtd-adapter';

describeIommuConformance('intel-vtd aw39', vtdAdapter(39), { numRuns: 30 });
describeIommuConformance('intel-vtd aw48', vtdAdapter(48), { numRuns: 15 });
describeIommuConformance('intel-vtd aw39 without caching mode (UNMAP notifiers only)', vtdAdapter(39, { cachingMode: false }), { numRuns: 10 });
