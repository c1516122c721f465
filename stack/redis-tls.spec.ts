import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { APP_COMMANDS, NGINX_COMMANDS, NGINX_REFRESH_COMMANDS } from './redis-tls';

describe('the least-privilege ACL users documented in docs/topology.md', () => {
  const doc = readFileSync(resolve(__dirname, '../docs/topology.md'), 'utf8');
  it.each([
    ['app', APP_COMMANDS],
    ['nginx', NGINX_COMMANDS],
  ])('are the ones the tests run with: %s', (user, commands) => {
    const line = new RegExp(
      `^user ${user} +on >\\S+ +~resty_shared_session:\\* &resty_shared_session:invalidate &resty_shared_session:ack (.*)$`,
      'm',
    ).exec(doc);
    expect(line?.[1].split(' ')).toEqual(commands);
  });
  it("names what nginx's refresh adds", () => {
    expect(doc).toContain(`add \`${NGINX_REFRESH_COMMANDS.join(' ')}\` to the nginx`);
  });
});
