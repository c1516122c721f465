import { Logger, type INestApplication } from '@nestjs/common';
import request from 'supertest';
import { RedisServer } from '../../../stack/redis-server';
import { leastPrivilegeUsers, TestCertificates } from '../../../stack/redis-tls';
import { forEachAdapter } from './support';
import { createTestApp } from './test-app';

/**
 * The module against managed-Redis settings: a TLS-only redis-server (a
 * throwaway CA) and the least-privilege ACL user the README gives the app.
 * A wrong CA, a wrong password or a missing permission is a 503 with a log
 * line that says why, never a session.
 */
const PREFIX = 'app_tls';
const PASSWORDS = { app: 'app-password', nginx: 'nginx-password' };

forEachAdapter((adapter) =>
  describe('SharedSessionModule over TLS with an ACL user', () => {
    let certs: TestCertificates;
    let otherCa: TestCertificates;
    let server: RedisServer;
    const apps: INestApplication[] = [];
    let errors: jest.SpyInstance;

    const appWith = async (redis: Record<string, unknown>) => {
      const app = await createTestApp(
        {
          secret: 'a-secret-of-at-least-32-bytes!!!',
          keyPrefix: PREFIX,
          redis: { host: '127.0.0.1', port: server.port, ...redis },
        },
        false,
        adapter,
      );
      apps.push(app);
      return app;
    };
    const logged = () => errors.mock.calls.map((c) => String(c[0])).join('\n');

    beforeAll(async () => {
      certs = TestCertificates.create();
      otherCa = TestCertificates.create('another CA');
      server = await RedisServer.start({ tls: certs, args: leastPrivilegeUsers(PREFIX, PASSWORDS) });
    });
    beforeEach(() => {
      errors = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    });
    afterEach(() => errors.mockRestore());
    afterAll(async () => {
      for (const app of apps) await app.close();
      await server?.dispose();
      certs?.dispose();
      otherCa?.dispose();
    });

    it('logs in, guards and logs out as the app ACL user, with the CA', async () => {
      const app = await appWith({ username: 'app', password: PASSWORDS.app, tls: { ca: certs.ca } });
      const http = () => request(app.getHttpServer());
      const res = await http()
        .post('/login')
        .send({ username: 'joe', groups: ['one'] })
        .expect(204);
      const cookie = [].concat(res.headers['set-cookie'] as never)[0] as string;
      await http().get('/groups/one/report').set('Cookie', cookie).expect(200);
      await http().get('/groups/two/report').set('Cookie', cookie).expect(403);
      await http().post('/logout').set('Cookie', cookie).expect(204);
      await http().get('/groups/one/report').set('Cookie', cookie).expect(401);
      expect(logged()).toBe('');
    });

    it('a certificate from another CA: 503, and the log says the certificate is not trusted', async () => {
      const app = await appWith({ username: 'app', password: PASSWORDS.app, tls: { ca: otherCa.ca } });
      await request(app.getHttpServer())
        .post('/login')
        .send({ username: 'joe', groups: ['one'] })
        .expect(503);
      expect(logged()).toMatch(/certificate/);
    });

    it('a wrong password: 503, and the log says WRONGPASS', async () => {
      const app = await appWith({ username: 'app', password: 'wrong', tls: { ca: certs.ca } });
      await request(app.getHttpServer())
        .post('/login')
        .send({ username: 'joe', groups: ['one'] })
        .expect(503);
      expect(logged()).toMatch(/WRONGPASS/);
    });

    it("a user without the permissions the app needs (nginx's): login is a 503 naming the missing permission", async () => {
      const app = await appWith({ username: 'nginx', password: PASSWORDS.nginx, tls: { ca: certs.ca } });
      await request(app.getHttpServer())
        .post('/login')
        .send({ username: 'joe', groups: ['one'] })
        .expect(503);
      expect(logged()).toMatch(/NOPERM/);
    });
  }),
);
