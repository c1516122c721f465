/**
 * resty.shared_session against managed-Redis settings, in a real nginx with a
 * real redis-server: TLS only (a throwaway CA made with openssl), ACL users
 * with least privilege (nginx's may not write), and a Unix socket. A wrong
 * CA, a wrong password or a missing permission is a 503, never an open door.
 */
import Redis from 'ioredis';
import { destroySession, invalidationChannel, writeSession } from '../../protocol/testkit';
import { NginxServer } from '../../stack/nginx-server';
import { RedisServer } from '../../stack/redis-server';
import { leastPrivilegeUsers, NGINX_COMMANDS, TestCertificates } from '../../stack/redis-tls';
import { waitFor } from '../../stack/wait';
import { ACCESS_LOCATION, assertNoCrash, get, nginxConf, SALT, SECRET, sessionCookie, SID, signature } from './support';

const PREFIX = 'rss_tls';
const PASSWORDS = { app: 'app-password', nginx: 'nginx-password' };

interface Conf {
  redis: string; // Lua source of the redis = {} fields
  ca?: string; // lua_ssl_trusted_certificate
  cache?: boolean;
}

function confFor(o: Conf) {
  return nginxConf({
    http: o.ca ? `lua_ssl_trusted_certificate ${o.ca};\n  lua_ssl_verify_depth 2;` : '',
    dict: '1m',
    configure: `{
      secret = "${SECRET}", salt = "${SALT}", key_prefix = "${PREFIX}",
      redis = { connect_timeout = 500, read_timeout = 500, ${o.redis} },
      refresh = false, -- nginx read-only, as the ACL user below (docs/topology.md)
      ${o.cache ? 'decision_cache = { dict = "decisions", ttl = 10 },' : ''}
    }`,
    subscriber: o.cache,
    plainText: false,
    locations: ACCESS_LOCATION,
  });
}

const status = async (nginx: NginxServer, group: string) => (await get(nginx, `/groups/${group}/x`, sessionCookie(SID))).status;

describe('Redis over TLS with ACL users (managed Redis)', () => {
  let certs: TestCertificates;
  let otherCa: TestCertificates;
  let redis: RedisServer;
  let app: Redis; // the application's ACL user, as the NestJS module connects
  const started: NginxServer[] = [];

  async function nginx(conf: Conf): Promise<NginxServer> {
    const server = await NginxServer.start({ conf: confFor(conf), errorLogLevel: 'info' });
    started.push(server);
    return server;
  }
  const tlsRedis = (extra = '') => `port = ${redis.port}, ssl = true, ${extra}`;

  beforeAll(async () => {
    certs = TestCertificates.create();
    otherCa = TestCertificates.create('another CA');
    // An administrator too, for the test's own questions (PUBSUB); neither side uses it.
    const admin = ['--user', 'admin', 'on', '>admin-password', '~*', '&*', '+@all'];
    redis = await RedisServer.start({ tls: certs, args: [...leastPrivilegeUsers(PREFIX, PASSWORDS), ...admin] });
    app = new Redis({
      port: redis.port,
      host: '127.0.0.1',
      username: 'app',
      password: PASSWORDS.app,
      tls: { ca: certs.ca },
      maxRetriesPerRequest: 1,
    });
    await writeSession(app, PREFIX, SID, { groups: ['g1'] }, { signature: signature(SID) });
  });

  afterAll(async () => {
    for (const server of started) {
      assertNoCrash(server.errorLog());
      await server.dispose();
    }
    app?.disconnect();
    await redis?.dispose();
    certs?.dispose();
    otherCa?.dispose();
  });

  test('with the CA, the nginx ACL user and its password: members in, others out', async () => {
    const server = await nginx({ ca: certs.caFile, redis: tlsRedis(`username = "nginx", password = "${PASSWORDS.nginx}",`) });
    expect(await status(server, 'g1')).toBe(200);
    expect(await status(server, 'g2')).toBe(403);
    expect(await status(server, 'g1')).toBe(200); // a pooled TLS connection
  });

  test('the subscriber works over TLS as the nginx user: a revocation is seen at once', async () => {
    const server = await nginx({ ca: certs.caFile, cache: true, redis: tlsRedis(`username = "nginx", password = "${PASSWORDS.nginx}",`) });
    const admin = new Redis({ port: redis.port, host: '127.0.0.1', username: 'admin', password: 'admin-password', tls: { ca: certs.ca } });
    try {
      await waitFor('the subscriber', async () => {
        const [, n] = (await admin.call('PUBSUB', 'NUMSUB', invalidationChannel(PREFIX))) as [string, number];
        return Number(n) === 1;
      });
    } finally {
      admin.disconnect();
    }
    expect(await status(server, 'g1')).toBe(200);
    await destroySession(app, PREFIX, SID, { publish: true });
    try {
      await waitFor('the refusal', async () => (await status(server, 'g1')) === 403, 1000);
    } finally {
      await writeSession(app, PREFIX, SID, { groups: ['g1'] }, { signature: signature(SID) });
    }
  });

  test("nginx's ACL user can read the session keys and write none", async () => {
    const asNginx = new Redis({
      port: redis.port,
      host: '127.0.0.1',
      username: 'nginx',
      password: PASSWORDS.nginx,
      tls: { ca: certs.ca },
      maxRetriesPerRequest: 1,
    });
    try {
      expect(await asNginx.sismember(`${PREFIX}:groups:${SID}`, 'g1')).toBe(1);
      await expect(asNginx.set(`${PREFIX}:data:${SID}`, '{}')).rejects.toThrow(/NOPERM/);
      await expect(asNginx.del(`${PREFIX}:groups:${SID}`)).rejects.toThrow(/NOPERM/);
      await expect(asNginx.publish(invalidationChannel(PREFIX), SID)).rejects.toThrow(/NOPERM/);
      await expect(asNginx.get('other:key')).rejects.toThrow(/NOPERM/);
      expect(NGINX_COMMANDS.some((c) => /set|del|expire|publish|eval/.test(c))).toBe(false);
    } finally {
      asNginx.disconnect();
    }
  });

  test('a certificate from another CA: 503 and a log line that says TLS, never an allow', async () => {
    const server = await nginx({ ca: otherCa.caFile, redis: tlsRedis(`username = "nginx", password = "${PASSWORDS.nginx}",`) });
    // Every answer a 503; the log says why (on a loaded machine a first try may time out instead).
    await waitFor('a log line about the certificate', async () => {
      expect(await status(server, 'g1')).toBe(503);
      return /503 redis unavailable: tls: .*certificate/.test(server.errorLog());
    });
  });

  test('a server name the certificate does not hold: 503', async () => {
    const server = await nginx({
      ca: certs.caFile,
      redis: tlsRedis(`server_name = "redis.example", username = "nginx", password = "${PASSWORDS.nginx}",`),
    });
    expect(await status(server, 'g1')).toBe(503);
    expect(server.errorLog()).toMatch(/tls: /);
  });

  test('a wrong password, or no ACL user: 503 with the reason, never an allow', async () => {
    const wrong = await nginx({ ca: certs.caFile, redis: tlsRedis('username = "nginx", password = "wrong",') });
    expect(await status(wrong, 'g1')).toBe(503);
    expect(wrong.errorLog()).toMatch(/auth: WRONGPASS/);
    const none = await nginx({ ca: certs.caFile, redis: tlsRedis() });
    expect(await status(none, 'g1')).toBe(503);
    expect(none.errorLog()).toMatch(/NOAUTH/);
  });

  test('a user without the permission nginx needs: 503 with NOPERM, never an allow', async () => {
    // The app user may not run SISMEMBER.
    const server = await nginx({ ca: certs.caFile, redis: tlsRedis(`username = "app", password = "${PASSWORDS.app}",`) });
    expect(await status(server, 'g1')).toBe(503);
    expect(server.errorLog()).toMatch(/redis error: NOPERM/);
  });

  test('plain TCP to a TLS-only port: 503', async () => {
    const server = await nginx({ redis: `port = ${redis.port}, username = "nginx", password = "${PASSWORDS.nginx}",` });
    expect(await status(server, 'g1')).toBe(503);
  });
});

describe('Redis on a Unix socket', () => {
  test('nginx reaches the sessions through redis.socket', async () => {
    const redis = await RedisServer.start();
    const client = new Redis(redis.port, '127.0.0.1');
    let server: NginxServer | undefined;
    try {
      await writeSession(client, PREFIX, SID, { groups: ['g1'] }, { signature: signature(SID) });
      server = await NginxServer.start({ conf: confFor({ redis: `socket = "${redis.socketPath}", port = 1,` }) });
      expect(await status(server, 'g1')).toBe(200);
      expect(await status(server, 'g2')).toBe(403);
      await redis.stop();
      expect(await status(server, 'g1')).toBe(503);
    } finally {
      await server?.dispose();
      client.disconnect();
      await redis.dispose();
    }
  });
});
