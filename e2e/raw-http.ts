import { connect } from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string[]>;
  body: string;
}

/**
 * One HTTP/1.1 request written byte for byte on a fresh socket: the path and
 * headers go out exactly as given (no URL normalization, any bytes), which a
 * client library would refuse or rewrite.
 */
export function rawRequest(port: number, path: string, headers: Record<string, string | Buffer> = {}, method = 'GET', body?: string): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.setTimeout(10_000, () => socket.destroy(new Error(`timeout: ${path}`)));
    socket.on('connect', () => {
      const lines: Buffer[] = [Buffer.from(`${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n`, 'latin1')];
      for (const [name, value] of Object.entries(headers)) {
        lines.push(Buffer.from(`${name}: `, 'latin1'), Buffer.isBuffer(value) ? value : Buffer.from(value, 'latin1'), Buffer.from('\r\n'));
      }
      if (body !== undefined) lines.push(Buffer.from(`Content-Length: ${Buffer.byteLength(body)}\r\n`));
      lines.push(Buffer.from('\r\n'));
      if (body !== undefined) lines.push(Buffer.from(body));
      socket.write(Buffer.concat(lines));
    });
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', reject);
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      const head = text.slice(0, split).split('\r\n');
      const status = Number(head[0].split(' ')[1]);
      const parsed: Record<string, string[]> = {};
      for (const line of head.slice(1)) {
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).trim().toLowerCase();
        (parsed[name] ??= []).push(line.slice(colon + 1).trim());
      }
      let body = text.slice(split + 4);
      if (parsed['transfer-encoding']?.[0] === 'chunked') body = unchunk(body);
      resolve({ status, headers: parsed, body });
    });
  });
}

function unchunk(body: string): string {
  let out = '';
  let rest = body;
  for (;;) {
    const eol = rest.indexOf('\r\n');
    const size = parseInt(rest.slice(0, eol), 16);
    if (!size) return out;
    out += rest.slice(eol + 2, eol + 2 + size);
    rest = rest.slice(eol + 2 + size + 2);
  }
}
