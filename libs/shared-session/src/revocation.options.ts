/** The module's `revocation` option: synchronous revocation (PROTOCOL.md section 13.4) and the periodic barrier. */
export interface SharedSessionRevocationOptions {
  /**
   * Wait until every subscribed nginx has acknowledged a change (PROTOCOL.md
   * section 13.4) before `logout`, `setGroups` and the control methods return
   * (those take `{ wait }` per call). Default false.
   */
  wait?: boolean;
  /** The longest wait, in milliseconds. Default 500. */
  timeoutMs?: number;
  /**
   * Publish a barrier (`!ack <id>`, PROTOCOL.md section 13.4) this often, in
   * milliseconds, and wait for its acknowledgements: it feeds the revocation
   * lag metric without a revocation. 0: off. Default 0. Only with readers
   * that know section 13 (a rock before it forgets every cached decision at
   * each barrier).
   */
  barrierIntervalMs?: number;
}

export type SharedSessionRevocationConfig = Required<SharedSessionRevocationOptions>;

/** `revocation` checked, with its defaults; `flag` checks a boolean option, `error` builds the module's options error. */
export function resolveRevocationOptions(
  revocation: SharedSessionRevocationOptions,
  flag: (option: string, value: unknown, fallback: boolean) => boolean,
  error: (option: string, problem: string) => Error,
): SharedSessionRevocationConfig {
  const timeoutMs = revocation.timeoutMs ?? 500;
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw error('revocation.timeoutMs', 'must be a positive number of milliseconds');
  }
  const barrierIntervalMs = revocation.barrierIntervalMs ?? 0;
  if (
    typeof barrierIntervalMs !== 'number' ||
    !Number.isInteger(barrierIntervalMs) ||
    (barrierIntervalMs !== 0 && barrierIntervalMs < 100)
  ) {
    throw error('revocation.barrierIntervalMs', 'must be 0 (off) or a whole number of milliseconds of at least 100');
  }
  return { wait: flag('revocation.wait', revocation.wait, false), timeoutMs, barrierIntervalMs };
}
