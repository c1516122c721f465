import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { RedisServer } from '../../../stack/redis-server';
import { waitFor } from '../../../stack/wait';
import { PROTOCOL_DEFAULTS } from '../../../protocol/testkit';
import { forEachAdapter } from './support';
import { createTestApp } from './test-app';

/**
 * Bad input and faults, answered alike on both adapters: a Cookie header
 * over PROTOCOL.md section 10's cap is no session (401 where one is needed),
 * one over Node's header limit a 431, never a 5xx; Redis frozen (SIGSTOP) a
 * 503 within the client's command timeout, and sessions back on SIGCONT.
 */

const NAME = PROTOCOL_DEFAULTS.cookieName;
/** The library's Redis command timeout (redis-client.ts): a frozen Redis is a 503 after it. */
const COMMAND_TIMEOUT_MS = 1000;

forEachAdapter((adapter) =>
  describe('bad input and Redis faults', () => {
    let server: RedisServer;
    let app: INestApplication;
    const http = () => request(app.getHttpServer());

    async function login(): Promise<string> {
      const res = await http()
        .post('/login')
        .send({ username: 'joe', groups: ['one'] })
        .expect(204);
      return ([] as string[])
        .concat(res.headers['set-cookie'])
        .find((c) => c.startsWith(`${NAME}=`))!
        .split(';')[0];
    }

    beforeAll(async () => {
      server = await RedisServer.start();
      app = await createTestApp({ secret: 'faults-secret-faults-secret-32', redis: server.url }, false, adapter);
    });
    afterAll(async () => {
      await app?.close();
      await server?.dispose();
    });

    it('a Cookie header over the protocol cap (8000 bytes) is no session: 401 on a guarded route, 200 on a public one', async () => {
      const cookie = await login();
      await http().get('/me').set('Cookie', cookie).expect(200);
      const padded = `${cookie}; pad=${'p'.repeat(9000)}`;
      await http().get('/me').set('Cookie', padded).expect(401);
      expect((await http().get('/public').set('Cookie', padded).expect(200)).body.username).toBeNull();
    });

    it("a header over Node's limit (16 KB) is a 431, never a 5xx; the app answers the next request", async () => {
      const res = await http()
        .get('/me')
        .set('Cookie', `${NAME}=${'a'.repeat(16 * 1024)}`)
        .then(
          (r) => r.status,
          (err: { status?: number; code?: string }) => err.status ?? err.code,
        );
      expect(res).toBe(431);
      await http().get('/public').expect(200);
    });

    it('Redis frozen (SIGSTOP): a session read is a 503 within the command timeout, and works again on SIGCONT', async () => {
      const cookie = await login();
      const pid = server.pid!;
      process.kill(pid, 'SIGSTOP');
      try {
        const started = Date.now();
        await http().get('/me').set('Cookie', cookie).expect(503);
        const took = Date.now() - started;
        expect(took).toBeGreaterThanOrEqual(COMMAND_TIMEOUT_MS - 50);
        expect(took).toBeLessThan(COMMAND_TIMEOUT_MS + 1500);
        await http().post('/login').send({ username: 'x', groups: [] }).expect(503);
        // No session cookie: nothing depends on Redis.
        await http().get('/public').expect(200);
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      await waitFor('the session read again', async () => (await http().get('/me').set('Cookie', cookie)).status === 200, 5000);
    });
  }),
);
