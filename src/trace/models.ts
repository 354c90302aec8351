/**
 * The model registry of the replayer: trace-v1 `model` name -> factory.
 * `none` is not a model (the replayer checks notify lines itself).
 */
import type { GuestMemory } from '../memory/guest-memory';
import type { IOMMUModel } from '../core/model';
import { createIntelVtd } from '../models/intel-vtd';
import type { VtdConfig } from '../models/intel-vtd';
import { createVirtioIommu } from '../models/virtio-iommu';
import { createSmmuV3 } from '../models/smmuv3';
import { createAmdVi } from '../models/amd-vi';

/** Builds a model from the trace header's `config` (validated by the model) over guest memory. */
export type ModelFactory = (config: unknown, mem: GuestMemory) => IOMMUModel;

const registry = new Map<string, ModelFactory>();

/** Registers (or replaces) the factory of a model name. */
export function registerModel(name: string, factory: ModelFactory): void {
  registry.set(name, factory);
}

/** Names of the registered models. */
export function modelNames(): string[] {
  return [...registry.keys()].sort();
}

/**
 * The factory for `name`. Throws an Error naming the known models when the
 * name is unknown. The built-in models are registered on first use, so that
 * importing the trace reader does not load every model.
 */
export function modelFactory(name: string): ModelFactory {
  registerBuiltins();
  const f = registry.get(name);
  if (f === undefined) {
    const known = modelNames();
    throw new Error(`unknown model "${name}" (known: ${known.length ? known.join(', ') + ', ' : ''}none)`);
  }
  return f;
}

let builtinsDone = false;

/** The one place where built-in models are wired to their trace-v1 names. */
function registerBuiltins(): void {
  if (builtinsDone) return;
  builtinsDone = true;
  if (!registry.has('intel-vtd')) {
    registry.set('intel-vtd', (config, mem) => createIntelVtd((config ?? {}) as Partial<VtdConfig>, mem));
  }
  if (!registry.has('virtio-iommu')) {
    registry.set('virtio-iommu', (config, mem) => createVirtioIommu(config as Record<string, unknown> | undefined, mem));
  }
  if (!registry.has('smmuv3')) registry.set('smmuv3', (config, mem) => createSmmuV3(config as Record<string, unknown> | undefined, mem));
  if (!registry.has('amd-vi')) registry.set('amd-vi', (config, mem) => createAmdVi(config as Record<string, unknown> | undefined, mem));
}
