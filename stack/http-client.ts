import { connect, Socket } from 'node:net';

/**
 * The tests' one HTTP/1.1 client, on raw sockets to 127.0.0.1: the request
 * line and the headers go out byte for byte as given (no URL normalization,
 * any byte, a header name repeated), which a client library would refuse or
 * rewrite. One request on a fresh connection (`request`), a keep-alive
 * connection (`HttpConnection`), or many over a bounded pool of them
 * (`runPool`); every response says when it was sent and when it was complete.
 * It imports nothing of the library: the nginx tests use it too.
 */

/** Header lines in order. A string value goes out as latin1 (one byte a character), a Buffer as it is; the list form may repeat a name. */
export type HeaderLines = Record<string, string | Buffer> | [string, string | Buffer][];

export interface RequestOptions {
  /** Default GET. */
  method?: string;
  headers?: HeaderLines;
  /** Sent as UTF-8, with its Content-Length. */
  body?: string;
}

export interface HttpResponse {
  /** 0: the connection ended without a complete response; -1: never sent (a pool's deadline had passed). */
  status: number;
  /** Lower-case names; every value, in the order received. */
  headers: Record<string, string[]>;
  /** Decoded as UTF-8 (chunked encoding undone). */
  body: string;
  /** When the request was written and when its answer was complete (Date.now()). */
  startedAt: number;
  endedAt: number;
  /** Why there is no response, when status is 0 or -1. */
  error?: string;
}

/**
 * The bytes of one HTTP/1.1 request for 127.0.0.1 (`Host: 127.0.0.1`, unless
 * the headers give a Host, as a browser's names the port). `keepAlive: false`
 * adds `Connection: close`.
 */
export function requestBytes(path: string | Buffer, options: RequestOptions & { keepAlive?: boolean } = {}): Buffer {
  const headers = Array.isArray(options.headers) ? options.headers : Object.entries(options.headers ?? {});
  const host = headers.some(([name]) => name.toLowerCase() === 'host') ? '' : 'Host: 127.0.0.1\r\n';
  const parts: Buffer[] = [
    Buffer.from(`${options.method ?? 'GET'} `, 'latin1'),
    Buffer.isBuffer(path) ? path : Buffer.from(path, 'latin1'),
    Buffer.from(` HTTP/1.1\r\n${host}${options.keepAlive === false ? 'Connection: close\r\n' : ''}`, 'latin1'),
  ];
  for (const [name, value] of headers) {
    parts.push(Buffer.from(`${name}: `, 'latin1'), Buffer.isBuffer(value) ? value : Buffer.from(value, 'latin1'), Buffer.from('\r\n'));
  }
  if (options.body !== undefined) parts.push(Buffer.from(`Content-Length: ${Buffer.byteLength(options.body)}\r\n`));
  parts.push(Buffer.from('\r\n'));
  if (options.body !== undefined) parts.push(Buffer.from(options.body));
  return Buffer.concat(parts);
}

/**
 * One request on a fresh connection to 127.0.0.1:`port` (`Connection: close`).
 * Rejects when the connection ends without a response.
 */
export async function request(
  port: number,
  path: string | Buffer,
  options: RequestOptions & { timeoutMs?: number } = {},
): Promise<HttpResponse> {
  const conn = new HttpConnection(port, options.timeoutMs);
  try {
    const res = await conn.request(requestBytes(path, { ...options, keepAlive: false }));
    if (res.status === 0) throw new Error(`${options.method ?? 'GET'} ${path} on port ${port}: ${res.error}`);
    return res;
  } finally {
    conn.close();
  }
}

/** POSTs JSON and parses the JSON answer; anything but a 200 is an error. */
export async function postJson<T = unknown>(
  port: number,
  path: string,
  payload: unknown,
  headers: Record<string, string> = {},
): Promise<T> {
  const res = await request(port, path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify(payload),
  });
  if (res.status !== 200) throw new Error(`POST ${path}: ${res.status} ${res.body}`);
  return JSON.parse(res.body) as T;
}

/**
 * A keep-alive HTTP/1.1 connection to 127.0.0.1 that sends raw bytes, one
 * request at a time, and reads each response by its Content-Length (or
 * chunked encoding, or to the end of the connection). When the server closes
 * the connection (after a 400, say) the next request opens a new one.
 */
export class HttpConnection {
  private socket?: Socket;
  private buffer: Buffer = Buffer.alloc(0);
  private waiting?: { resolve: (r: HttpResponse) => void; startedAt: number };
  private ended = false;
  /** Connections opened so far (1 + reconnections). */
  opened = 0;

  constructor(
    readonly port: number,
    private readonly timeoutMs = 10_000,
  ) {}

  /** Sends `bytes` (see requestBytes); resolves with the response, or with status 0 and `error` when there was none. */
  request(bytes: Buffer): Promise<HttpResponse> {
    if (this.waiting) throw new Error('HttpConnection: one request at a time');
    if (!this.socket || this.ended || this.socket.destroyed) this.open();
    const startedAt = Date.now();
    return new Promise((resolve) => {
      this.waiting = { resolve, startedAt };
      const socket = this.socket!;
      socket.write(bytes, (err) => {
        // The server may close while we are still writing (an oversized request): read what it answered.
        if (err && this.socket === socket) this.finish(err.message);
      });
    });
  }

  close(): void {
    const socket = this.socket;
    this.socket = undefined;
    socket?.destroy();
  }

  private open(): void {
    this.close();
    this.buffer = Buffer.alloc(0);
    this.ended = false;
    this.opened++;
    const socket = connect(this.port, '127.0.0.1');
    socket.setNoDelay(true);
    socket.setTimeout(this.timeoutMs, () => socket.destroy(new Error('timeout')));
    // Events of a connection that was already replaced must not touch the current one.
    const current = () => this.socket === socket;
    socket.on('data', (d: Buffer) => {
      if (!current()) return;
      this.buffer = this.buffer.length === 0 ? d : Buffer.concat([this.buffer, d]);
      this.tryParse(false);
    });
    socket.on('end', () => {
      if (!current()) return;
      this.ended = true;
      this.tryParse(true);
    });
    socket.on('error', (err) => {
      if (!current()) return;
      this.ended = true;
      this.tryParse(true, err.message);
    });
    socket.on('close', () => {
      if (!current()) return;
      this.ended = true;
      this.tryParse(true, 'closed');
    });
    this.socket = socket;
  }

  private tryParse(atEnd: boolean, error?: string): void {
    if (!this.waiting) return;
    const parsed = parseResponse(this.buffer, atEnd);
    if (parsed) {
      this.buffer = this.buffer.subarray(parsed.consumed);
      if (parsed.headers.connection?.some((v) => /close/i.test(v))) {
        this.ended = true;
        this.socket?.destroy();
      }
      this.resolveWith(parsed);
      return;
    }
    if (atEnd) this.finish(error ?? 'connection ended without a response');
  }

  private finish(error: string): void {
    if (!this.waiting) return;
    // A write error can come before the response that is already in the buffer.
    const parsed = parseResponse(this.buffer, true);
    if (!parsed && !this.ended) return; // wait for 'end'/'close' to read the answer
    this.ended = true;
    this.socket?.destroy();
    this.resolveWith(parsed ?? { status: 0, headers: {}, body: '', error });
  }

  private resolveWith(response: { status: number; headers: Record<string, string[]>; body: string; error?: string }): void {
    const { resolve, startedAt } = this.waiting!;
    this.waiting = undefined;
    const { status, headers, body, error } = response;
    resolve({ status, headers, body, startedAt, endedAt: Date.now(), ...(error === undefined ? {} : { error }) });
  }
}

function parseResponse(
  buf: Buffer,
  atEnd: boolean,
): { status: number; headers: Record<string, string[]>; body: string; consumed: number } | undefined {
  const split = buf.indexOf('\r\n\r\n');
  if (split < 0) return undefined;
  const head = buf.subarray(0, split).toString('latin1').split('\r\n');
  const status = Number(head[0].split(' ')[1]);
  const headers: Record<string, string[]> = {};
  for (const line of head.slice(1)) {
    const colon = line.indexOf(':');
    (headers[line.slice(0, colon).trim().toLowerCase()] ??= []).push(line.slice(colon + 1).trim());
  }
  const start = split + 4;
  if (status === 204 || status === 304 || (status >= 100 && status < 200)) return { status, headers, body: '', consumed: start };
  const length = headers['content-length']?.[0];
  if (length !== undefined) {
    const end = start + Number(length);
    if (buf.length < end) return undefined;
    return { status, headers, body: buf.subarray(start, end).toString('utf8'), consumed: end };
  }
  if (headers['transfer-encoding']?.[0]?.toLowerCase() === 'chunked') {
    let pos = start;
    const chunks: Buffer[] = [];
    for (;;) {
      const eol = buf.indexOf('\r\n', pos);
      if (eol < 0) return undefined;
      const size = parseInt(buf.subarray(pos, eol).toString('latin1'), 16);
      if (Number.isNaN(size)) return undefined;
      if (size === 0) {
        const trailerEnd = buf.indexOf('\r\n', eol + 2);
        if (trailerEnd < 0) return undefined;
        return { status, headers, body: Buffer.concat(chunks).toString('utf8'), consumed: trailerEnd + 2 };
      }
      if (buf.length < eol + 2 + size + 2) return undefined;
      chunks.push(buf.subarray(eol + 2, eol + 2 + size));
      pos = eol + 2 + size + 2;
    }
  }
  // No length: the body runs to the end of the connection.
  if (!atEnd) return undefined;
  return { status, headers, body: buf.subarray(start).toString('utf8'), consumed: buf.length };
}

/**
 * Sends every request over `concurrency` keep-alive connections and returns
 * the responses in the order of `requests`. Bounded: stops early (the rest
 * get status -1) once `deadlineMs` has passed.
 */
export async function runPool(
  port: number,
  requests: Buffer[],
  options: { concurrency?: number; deadlineMs?: number } = {},
): Promise<{ responses: HttpResponse[]; connections: number; ms: number }> {
  const concurrency = options.concurrency ?? 16;
  const deadline = Date.now() + (options.deadlineMs ?? 60_000);
  const responses: HttpResponse[] = new Array(requests.length);
  const started = Date.now();
  let next = 0;
  const conns = Array.from({ length: Math.min(concurrency, requests.length) }, () => new HttpConnection(port));
  await Promise.all(
    conns.map(async (conn) => {
      while (next < requests.length) {
        const i = next++;
        if (Date.now() > deadline) {
          responses[i] = { status: -1, headers: {}, body: '', startedAt: 0, endedAt: 0, error: 'deadline' };
          continue;
        }
        responses[i] = await conn.request(requests[i]);
      }
      conn.close();
    }),
  );
  return { responses, connections: conns.reduce((n, c) => n + c.opened, 0), ms: Date.now() - started };
}

/** Counts of each status, for printing: { "403": 812, ... }. */
export function statusCounts(responses: { status: number }[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of responses) counts[r.status] = (counts[r.status] ?? 0) + 1;
  return counts;
}
