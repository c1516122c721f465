export const DEMO_CONFIG = Symbol('DEMO_CONFIG');
/** The prom-client Registry the library counts in and /metrics serves. */
export const DEMO_METRICS_REGISTRY = Symbol('DEMO_METRICS_REGISTRY');
