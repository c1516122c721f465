import type { HttpResponse } from '../stack/http-client';

/** A demo stack behind nginx, as the admin page's tests drive it (cookies are session cookie values). */
export interface DemoClient {
  get(path: string, cookie?: string): Promise<HttpResponse>;
  post(path: string, cookie: string): Promise<HttpResponse>;
  login(email: string, password: string): Promise<string>;
}

/**
 * The admin page purges group one's cached resources (PROTOCOL.md section 13.3): a member's next request for
 * one is a MISS with a new response, then HITs again; group three's entry keeps its HITs.
 */
export async function expectPurgeOfOneGroup(demo: DemoClient): Promise<void> {
  const admin = await demo.login('admin@example.com', 'itsadmin');
  const joe = await demo.login('joe@example.com', 'itsjoe');
  const one = '/app/api/v1/group/one/cacheable/purge';
  const three = '/app/api/v1/group/three/cacheable/purge';
  for (const path of [one, three]) await demo.get(path, joe);
  expect((await demo.get(one, joe)).headers['x-cache-status']).toEqual(['HIT']);
  expect((await demo.get(three, joe)).headers['x-cache-status']).toEqual(['HIT']);
  const before = JSON.parse((await demo.get(one, joe)).body).response_id;

  expect((await demo.post('/app/admin/groups/one/purge-cache', admin)).status).toBe(303);
  const miss = await demo.get(one, joe);
  expect(miss.headers['x-cache-status']).toEqual(['MISS']);
  expect(JSON.parse(miss.body).response_id).not.toBe(before);
  expect((await demo.get(one, joe)).headers['x-cache-status']).toEqual(['HIT']);
  expect((await demo.get(three, joe)).headers['x-cache-status']).toEqual(['HIT']);
}
