import { request as httpRequest } from 'node:http';

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * One HTTP request on a fresh connection (no agent), with the headers exactly
 * as given: a Cookie header is sent as it is, duplicates and all.
 */
export function request(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`timeout: ${url}`)));
    if (options.body !== undefined) req.write(options.body);
    req.end();
  });
}

/** POSTs JSON and parses the JSON answer. */
export async function postJson<T = any>(url: string, payload: unknown, headers: Record<string, string> = {}): Promise<T> {
  const res = await request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(payload),
  });
  if (res.status !== 200) throw new Error(`POST ${url}: ${res.status} ${res.body}`);
  return JSON.parse(res.body) as T;
}

/** Lua that opens a Redis connection the 0.1.x way, on OpenResty or Debian. */
export function luaConnectRedis(port: number, varName = 'red'): string {
  return `
      local ok_lib, redis = pcall(require, "resty.redis")
      if not ok_lib then redis = require "nginx.redis" end
      local ${varName} = redis:new()
      ${varName}:set_timeout(1000)
      assert(${varName}:connect("127.0.0.1", ${port}))`;
}
