import { PROTOCOL_DEFAULTS } from '../protocol/testkit/layout';
import { HttpResponse, request, RequestOptions, requestBytes } from './http-client';

/**
 * Logging in to the demo app (apps/demo) as its login form does: the one way
 * the tests and the bench get a session from it, through nginx or at the app.
 */

/** The form's other fields: `remember: '1'` is its "keep me signed in" box, ticked. */
export type LoginFields = Record<string, string>;

/** The form post of `email` and `password` (and `fields`) to /app/login, with any more `headers` (a browser's Origin...). */
function loginForm(email: string, password: string, headers: Record<string, string> = {}, fields: LoginFields = {}): RequestOptions {
  const body = Object.entries({ email, password, ...fields })
    .map(([name, value]) => `${name}=${encodeURIComponent(value)}`)
    .join('&');
  return { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded', ...headers }, body };
}

/** The login request's bytes, for a keep-alive HttpConnection or runPool. */
export function loginRequest(email: string, password: string): Buffer {
  return requestBytes('/app/login', loginForm(email, password));
}

/** The value of the cookie `name` that a response sets, if it sets one. */
export function cookieSetBy(res: HttpResponse, name: string = PROTOCOL_DEFAULTS.cookieName): string | undefined {
  const header = res.headers['set-cookie']?.find((c) => c.startsWith(`${name}=`));
  return header?.split(';')[0].slice(name.length + 1);
}

/**
 * Logs in through `port` (nginx or the app): the answer (303 when it worked),
 * and the session cookie's value when it set one. Without `headers` it is a
 * non-browser client's login (no Origin, no Sec-Fetch-Site).
 */
export async function login(
  port: number,
  email: string,
  password: string,
  headers?: Record<string, string>,
  fields?: LoginFields,
): Promise<HttpResponse & { cookie?: string }> {
  const res = await request(port, '/app/login', loginForm(email, password, headers, fields));
  return { ...res, cookie: cookieSetBy(res) };
}

/** login() that must succeed: the session cookie's value. */
export async function mustLogin(port: number, email: string, password: string): Promise<string> {
  const { status, cookie } = await login(port, email, password);
  if (status !== 303 || !cookie) throw new Error(`login of ${email} failed: ${status}`);
  return cookie;
}
