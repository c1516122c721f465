import { DemoStack } from '../../stack/demo-stack';
import { buildRequest, RawConnection } from './raw-pool';

export const SECRET = 'reliability-stack-secret';
export const SALT = 'app_session_salt';

/** The demo stack (Redis, the built demo app, nginx) with a known secret. */
export function startStack(): Promise<DemoStack> {
  return DemoStack.start({ env: { ...process.env, SESSION_SECRET: SECRET, SESSION_SALT: SALT, SESSION_SECRET_FALLBACKS: '', CACHE_SECONDS: '60' } });
}

/** Logs in through `port` (nginx or the app) and returns the cookie value, or the status when it failed. */
export async function login(port: number, email: string, password: string): Promise<{ status: number; cookie?: string }> {
  const conn = new RawConnection(port);
  try {
    const body = `email=${encodeURIComponent(email)}&password=${encodeURIComponent(password)}`;
    const res = await conn.request(buildRequest('/app/login', [['Content-Type', 'application/x-www-form-urlencoded']], { method: 'POST', body, keepAlive: false }));
    const header = res.headers['set-cookie']?.find((c) => c.startsWith('session='));
    return { status: res.status, cookie: header ? header.slice('session='.length, header.indexOf(';')) : undefined };
  } finally {
    conn.close();
  }
}

/** login() that must succeed. */
export async function mustLogin(port: number, email: string, password: string): Promise<string> {
  const { status, cookie } = await login(port, email, password);
  if (status !== 303 || !cookie) throw new Error(`login of ${email} failed: ${status}`);
  return cookie;
}

/** Worker crashes that nginx logs: "worker process 123 exited on signal 11". */
export function crashLines(errorLog: string): string[] {
  return errorLog.split('\n').filter((line) => /\bsignal\b/.test(line));
}
