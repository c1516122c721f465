export const DEMO_CONFIG = Symbol('DEMO_CONFIG');
