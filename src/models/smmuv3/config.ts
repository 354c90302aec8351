/**
 * Options of the SMMUv3 model (trace-v1 header `config`), named after QEMU's
 * arm-smmuv3 properties.
 */

/** Translation stages advertised: QEMU's `stage` property ("1" in 7.2; "2" and "nested" from QEMU 8.1 / 9.2). */
export type SmmuStage = '1' | '2' | 'nested';

export interface SmmuV3Config {
  /** "1" (default, QEMU 7.2 bit for bit), "2" (stage 2 only) or "nested" (both). */
  stage: SmmuStage;
}

export const DEFAULT_SMMUV3_CONFIG: Readonly<SmmuV3Config> = Object.freeze({ stage: '1' });

/** A configuration the model refuses (as QEMU refuses a bad property value). */
export class SmmuV3ConfigError extends Error {
  override readonly name = 'SmmuV3ConfigError';
}

/** Fills in defaults and validates; unknown options are refused. */
export function parseSmmuV3Config(config: unknown): Readonly<SmmuV3Config> {
  if (config === undefined || config === null) return DEFAULT_SMMUV3_CONFIG;
  if (typeof config !== 'object') throw new SmmuV3ConfigError('smmuv3: config must be an object');
  const c = config as Record<string, unknown>;
  for (const key of Object.keys(c)) {
    if (!(key in DEFAULT_SMMUV3_CONFIG)) throw new SmmuV3ConfigError(`smmuv3: unknown option '${key}' (known: stage)`);
  }
  const stage = c.stage ?? '1';
  if (stage !== '1' && stage !== '2' && stage !== 'nested') {
    throw new SmmuV3ConfigError(`smmuv3: stage must be "1", "2" or "nested" (got ${JSON.stringify(stage)})`);
  }
  return Object.freeze({ stage });
}
