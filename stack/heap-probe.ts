/**
 * Preloaded (`--require`) into a Node program that the tests start with
 * `--expose-gc` and an IPC channel (ServerProcess.node's `heapProbe`): asked
 * `'memory'`, it collects all garbage and answers with process.memoryUsage().
 * Live memory after a full collection is what a leak grows; RSS is mostly how
 * much heap V8 chose to keep, which differs from one Node major to the next.
 * Nothing of it is in the program itself.
 */
export {}; // a module, so that its names stay its own

const gc = (globalThis as { gc?: () => void }).gc;
if (process.send && gc) {
  process.on('message', (message) => {
    if (message !== 'memory') return;
    // Twice: what the first collection's finalizers release is collected by the second.
    gc();
    gc();
    process.send?.({ memory: process.memoryUsage() });
  });
  // The channel must not keep the program alive once it wants to exit.
  process.channel?.unref();
}
