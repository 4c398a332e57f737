/**
 * One operation at a time, in call order: a component's start, reload, stop and its own
 * background passes (the drift loop) go through one queue so they never interleave. A
 * failed operation rejects its own promise only; the next one still runs.
 */
export class OperationQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(operation: () => Promise<T>): Promise<T> {
    const next = this.tail.then(operation);
    this.tail = next.catch(() => undefined);
    return next;
  }
}
