import { AddressInfo, createServer, Server } from 'node:net';
import { NginxServer, NginxStartError } from './nginx-server';
import { freePort, listensOn } from './ports';
import { RedisServer } from './redis-server';
import { ServerProcess, ServerStartError } from './server-process';

/**
 * freePort() reserves nothing: another process may bind the port before our
 * server does. Then the server we started must fail and say so, not pass its
 * readiness check on the other process's answers (the tests would then talk
 * to someone else's server, or to nothing once ours has exited).
 */

/** Another process's server on 127.0.0.1 (here, this one's): it answers every connection with `reply`. */
async function squatter(reply: string): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => {
    socket.on('data', () => socket.end(reply));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

const HTTP_OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok';

describe('freePort and listensOn', () => {
  let taken: { server: Server; port: number } | undefined;
  afterEach(() => new Promise<void>((resolve) => (taken ? taken.server.close(() => resolve()) : resolve())));

  it('hands out each port once per process', async () => {
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
    expect(new Set(ports).size).toBe(20);
  });

  it('tells the process that holds a listening port from one that does not', async () => {
    taken = await squatter(HTTP_OK);
    expect(listensOn(process.pid, taken.port)).toBe(true);
    expect(listensOn(process.pid, await freePort())).toBe(false);
    // The parent of this process does not hold it.
    expect(listensOn(process.ppid, taken.port)).toBe(false);
  });

  it('a program whose port another process answers on fails, with its own words (EADDRINUSE)', async () => {
    taken = await squatter(HTTP_OK);
    const program = `require('node:http').createServer((q, r) => r.end('mine')).listen(${taken.port}, '127.0.0.1')`;
    const start = ServerProcess.start(process.execPath, ['-e', program], {}, { port: taken.port, path: '/' });
    const error = await start.then(
      (proc) => proc.stop().then(() => undefined),
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(ServerStartError);
    expect((error as ServerStartError).portTaken).toBe(true);
    expect((error as Error).message).toMatch(/exited \(1\):\n[\s\S]*EADDRINUSE/);
  });

  it('a redis-server whose port another process answers PING on fails, with its own words', async () => {
    taken = await squatter('+PONG\r\n');
    const error = await RedisServer.start({ port: taken.port }).then(
      (redis) => redis.dispose().then(() => undefined),
      (err: unknown) => err,
    );
    expect((error as Error | undefined)?.message).toMatch(/exited while starting\n[\s\S]*Address already in use/);
  });

  it('an nginx whose port another process answers on fails, with its own words', async () => {
    taken = await squatter(HTTP_OK);
    const port = taken.port;
    const error = await NginxServer.start({
      port,
      conf: (ctx) => `${ctx.preamble}events {}\nhttp {\n${ctx.httpPreamble}server { listen 127.0.0.1:${ctx.port}; return 200; }\n}\n`,
    }).then(
      (nginx) => nginx.dispose().then(() => undefined),
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(NginxStartError);
    expect((error as NginxStartError).output).toMatch(/bind\(\) to 127\.0\.0\.1:\d+ failed \(98: Address already in use\)/);
  }, 20_000);
});
