/**
 * Worker-thread entry of the batch replayer (./batch): replays the traces
 * the parent sends, one at a time, and answers with their summaries.
 */
import { parentPort } from 'node:worker_threads';
import { replaySummary } from './batch';
import type { BatchReply, BatchRequest } from './batch';

const port = parentPort;
if (port !== null) {
  port.on('message', (req: BatchRequest) => {
    void replaySummary(req.file, req.maxReported === undefined ? {} : { maxReported: req.maxReported }).then((result) => {
      const reply: BatchReply = { index: req.index, result };
      port.postMessage(reply);
    });
  });
}
