import type { SharedSessionRedis } from './redis-connection';

/**
 * PROTOCOL.md section 9: a Redis that may evict session keys one by one can
 * leave a half-deleted session that nginx still allows. Says so when Redis has
 * a memory limit and a policy other than noeviction (every session key has a
 * ttl, so volatile-* policies evict them too). Managed services that refuse
 * CONFIG GET are not asked twice: nothing is said.
 */
export async function evictionRisk(client: SharedSessionRedis): Promise<string | undefined> {
  try {
    const [, maxmemory] = (await client.config('GET', 'maxmemory')) as string[];
    const [, policy] = (await client.config('GET', 'maxmemory-policy')) as string[];
    if (Number(maxmemory) > 0 && policy && policy !== 'noeviction') {
      return `Redis may evict session keys one by one (maxmemory ${maxmemory}, maxmemory-policy ${policy}): a half-evicted session stays open at nginx until the app reads it; use maxmemory-policy noeviction`;
    }
  } catch {
    // CONFIG is often disabled on managed Redis: nothing to say.
  }
  return undefined;
}
