import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { APP_COMMANDS, NGINX_COMMANDS, NGINX_REFRESH_COMMANDS, nginxAckSelector } from './redis-tls';

describe('the least-privilege ACL users documented in docs/topology.md', () => {
  const doc = readFileSync(resolve(__dirname, '../docs/topology.md'), 'utf8');
  const P = 'resty_shared_session';
  const line = (user: string) => new RegExp(`^user ${user} +on >\\S+ +(.*)$`, 'm').exec(doc)?.[1].split(/ +/);

  it('are the ones the tests run with: app', () => {
    expect(line('app')).toEqual([`~${P}:*`, `&${P}:invalidate`, `&${P}:ack`, ...APP_COMMANDS]);
  });
  it('are the ones the tests run with: nginx (PUBLISH on the acknowledgement channel only)', () => {
    expect(line('nginx')).toEqual([`~${P}:*`, `&${P}:invalidate`, ...NGINX_COMMANDS, ...nginxAckSelector(P).split(' ')]);
  });
  it("names what nginx's refresh adds", () => {
    expect(doc).toContain(`add \`${NGINX_REFRESH_COMMANDS.join(' ')}\` to the nginx`);
  });
});
