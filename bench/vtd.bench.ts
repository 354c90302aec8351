import type { BenchSuite } from './harness';

/** Figures of the vtd area (filled in by its owner). */
export const suite: BenchSuite = () => [];
