/**
 * The module's `loginThrottle` option (login-throttle.ts): off unless given.
 * Defaults after Authelia's regulation: 3 failures in 2 minutes ban for 5
 * minutes; an address alone is banned past a higher limit.
 */
export interface LoginThrottleOptions {
  /** Failed logins of one user from one client address within the window that ban that pair. Default 3. */
  maxFailures?: number;
  /** Failed logins from one client address, whatever the users, within the window that ban the address. Default 20. */
  maxFailuresPerAddress?: number;
  /** The sliding window, in seconds. Default 120. */
  windowSeconds?: number;
  /** How long a ban lasts, in seconds. Default 300. */
  banSeconds?: number;
}

export type LoginThrottleConfig = Required<LoginThrottleOptions>;

export const LOGIN_THROTTLE_DEFAULTS: LoginThrottleConfig = {
  maxFailures: 3,
  maxFailuresPerAddress: 20,
  windowSeconds: 120,
  banSeconds: 300,
};

/**
 * `loginThrottle` checked: undefined or false is off (null), true or an
 * object is on, with the defaults filled in. `fail` makes the error that
 * names the option.
 */
export function resolveLoginThrottleOptions(value: unknown, fail: (option: string, problem: string) => Error): LoginThrottleConfig | null {
  if (value === undefined || value === false) return null;
  if (value === true) return { ...LOGIN_THROTTLE_DEFAULTS };
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw fail('loginThrottle', 'must be true, false or an object');
  const given = value as Record<string, unknown>;
  const config = { ...LOGIN_THROTTLE_DEFAULTS };
  for (const key of Object.keys(given)) {
    if (!(key in LOGIN_THROTTLE_DEFAULTS)) throw fail(`loginThrottle.${key}`, 'is not a known option');
    const n = given[key];
    if (n === undefined) continue;
    if (typeof n !== 'number' || !Number.isInteger(n) || n <= 0) throw fail(`loginThrottle.${key}`, 'must be a positive whole number');
    config[key as keyof LoginThrottleConfig] = n;
  }
  if (config.maxFailuresPerAddress < config.maxFailures) {
    throw fail('loginThrottle.maxFailuresPerAddress', `must be at least loginThrottle.maxFailures (${config.maxFailures})`);
  }
  return config;
}
