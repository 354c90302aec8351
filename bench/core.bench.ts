import type { BenchSuite } from './harness';

/** Figures of the core area (filled in by its owner). */
export const suite: BenchSuite = () => [];
