import type { KeyLayout } from '../../protocol/testkit';
import { DemoStack } from '../../stack/demo-stack';

export const SECRET = 'reliability-stack-secret';
export const SALT = 'app_session_salt';

/** The demo stack (Redis, the built demo app, nginx) with a known secret; `heapProbe` for memory checks; sessions in `layout` (v1). */
export function startDemoStack(options: { heapProbe?: boolean; layout?: KeyLayout } = {}): Promise<DemoStack> {
  return DemoStack.start({
    env: {
      ...process.env,
      SESSION_SECRET: SECRET,
      SESSION_SALT: SALT,
      SESSION_SECRET_FALLBACKS: '',
      CACHE_SECONDS: '60',
      SESSION_KEY_LAYOUT: options.layout ?? 'v1',
    },
    heapProbe: options.heapProbe,
  });
}

/** Worker crashes that nginx logs: "worker process 123 exited on signal 11". */
export function crashLines(errorLog: string): string[] {
  return errorLog.split('\n').filter((line) => /\bsignal\b/.test(line));
}
