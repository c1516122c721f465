import { AddressInfo, createServer, Server, Socket } from 'node:net';
import { HttpConnection, request, requestBytes, runPool } from './http-client';

/** A TCP server on 127.0.0.1 that answers each request it reads with `answer(request text, socket)`. */
async function cannedServer(answer: (req: string, socket: Socket) => void): Promise<{ server: Server; port: number; seen: string[] }> {
  const seen: string[] = [];
  const server = createServer((socket) => {
    let buffered = '';
    socket.on('data', (d) => {
      buffered += d.toString('latin1');
      // Requests here have no body, or end in their body: one request per read is enough for these tests.
      seen.push(buffered);
      answer(buffered, socket);
      buffered = '';
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, seen };
}

const ok = (body: string, extra = '') => `HTTP/1.1 200 OK\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;

describe('the HTTP client', () => {
  let server: Server | undefined;
  afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

  it('writes the request line and headers byte for byte, repeated names and raw bytes included', () => {
    const bytes = requestBytes('/a/../b%00', {
      method: 'POST',
      headers: [
        ['Cookie', 'a=1'],
        ['Cookie', Buffer.from([0x73, 0xff])],
      ],
      body: 'é',
    });
    expect(bytes.toString('latin1')).toBe(
      'POST /a/../b%00 HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: a=1\r\nCookie: s\xff\r\nContent-Length: 2\r\n\r\n\xc3\xa9',
    );
    expect(requestBytes('/', { keepAlive: false }).toString()).toBe('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    expect(requestBytes('/', { headers: { host: '127.0.0.1:8089' } }).toString()).toBe('GET / HTTP/1.1\r\nhost: 127.0.0.1:8089\r\n\r\n');
  });

  it('request(): one connection, Connection: close, every header value kept, a chunked body put together', async () => {
    const canned = await cannedServer((_req, socket) =>
      socket.end(
        'HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhé\r\n2\r\nyo\r\n0\r\n\r\n',
      ),
    );
    server = canned.server;
    const res = await request(canned.port, '/x', { headers: { Cookie: 'c=3' } });
    expect(res).toMatchObject({ status: 200, body: 'héyo', headers: { 'set-cookie': ['a=1', 'b=2'] } });
    expect(res.endedAt).toBeGreaterThanOrEqual(res.startedAt);
    expect(canned.seen).toEqual(['GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nCookie: c=3\r\n\r\n']);
  });

  it('HttpConnection keeps one connection alive, and opens another after the server closes it', async () => {
    let n = 0;
    const canned = await cannedServer((_req, socket) =>
      ++n === 2 ? socket.end(ok('two', 'Connection: close\r\n')) : socket.write(ok(String(n))),
    );
    server = canned.server;
    const conn = new HttpConnection(canned.port);
    const bodies = [];
    for (let i = 0; i < 3; i++) bodies.push((await conn.request(requestBytes('/'))).body);
    conn.close();
    expect(bodies).toEqual(['1', 'two', '3']);
    expect(conn.opened).toBe(2);
  });

  it('a connection closed without an answer: status 0 on a connection, an error from request()', async () => {
    const canned = await cannedServer((_req, socket) => socket.destroy());
    server = canned.server;
    const conn = new HttpConnection(canned.port);
    const res = await conn.request(requestBytes('/'));
    conn.close();
    expect(res.status).toBe(0);
    expect(res.error).toBeDefined();
    await expect(request(canned.port, '/gone')).rejects.toThrow(/GET \/gone/);
  });

  it('runPool answers in the order of the requests, over at most `concurrency` connections', async () => {
    const canned = await cannedServer((req, socket) => socket.write(ok(req.split(' ')[1])));
    server = canned.server;
    const paths = Array.from({ length: 20 }, (_x, i) => `/${i}`);
    const { responses, connections } = await runPool(
      canned.port,
      paths.map((p) => requestBytes(p)),
      { concurrency: 4 },
    );
    expect(responses.map((r) => r.body)).toEqual(paths);
    expect(connections).toBe(4);
  });
});
