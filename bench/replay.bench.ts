import type { BenchSuite } from './harness';

/** Figures of the replay area (filled in by its owner). */
export const suite: BenchSuite = () => [];
