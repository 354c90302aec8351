/**
 * Trace format v1 (docs/trace-format.md): typed records, a streaming
 * reader (plain or gzip), a writer, the replayer and its model registry.
 */
export type {
  TraceHeader, TraceRamRegion, TraceEvent, TraceOp, TraceEntry, TranslateExpect,
  MemWriteEvent, MemExpectEvent, MmioWriteEvent, MmioReadEvent, DmaReadEvent, DmaWriteEvent, TranslateEvent,
  NotifierAddEvent, NotifierDelEvent, NotifyEvent, ViewExpectEvent, MsiExpectEvent,
  VirtioConfigReadEvent, VirtioConfigWriteEvent, VirtioFeaturesEvent, VirtioRequestEvent, VirtioEventExpectEvent, VirtioResetEvent,
} from './types';
export { TraceFormatError, TRACE_OPS } from './types';
export { parseHeader, parseEvent, parseEventLine } from './parse';
export { readTrace, readTraceAll } from './reader';
export type { TraceInput, TraceHandler, ReadTraceOptions, ReadTraceResult } from './reader';
export { formatHeader, formatEvent, TraceWriter } from './writer';
export { Replayer, replayTrace } from './replay';
export type { ReplayReport, ReplayMismatch, ReplayViolation, ReplayOptions, ReportEntry, VirtioIommuOps } from './replay';
export { registerModel, modelFactory, modelNames } from './models';
export type { ModelFactory } from './models';
export { TraceRecorder } from './recorder';
export type { TraceRecorderOptions, TraceRecorderStats, RecordedNotifierHandle, RecordingAddressSpace } from './recorder';
